package mmap

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestGuardTruncatedFile reads a mapping past the end of its truncated
// file: Guard returns ErrFault where the read would have killed the
// process with SIGBUS.
func TestGuardTruncatedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := Map(f, 1<<16, true)
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(b)
	var sum int // read by the end of the test: the loads stay
	read := func() error {
		var s byte
		for i := 0; i < len(b); i += 4096 {
			s += b[i]
		}
		sum += int(s)
		return nil
	}
	if err := Guard(read); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	if err := Guard(read); !errors.Is(err, ErrFault) {
		t.Fatalf("err = %v, want ErrFault", err)
	}
	if err := GuardParallel(4, 16, func(start, end int) error {
		var s byte
		for i := start; i < end; i++ {
			s += b[i*4096]
		}
		if s == 255 {
			return errors.New("unexpected byte")
		}
		return nil
	}); !errors.Is(err, ErrFault) {
		t.Fatalf("GuardParallel: err = %v, want ErrFault", err)
	}
	if sum != 0 {
		t.Fatalf("read %d from a zero file", sum)
	}
}

func TestGuardPassesOtherPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the original panic", r)
		}
	}()
	_ = Guard(func() error { panic("boom") })
}

func TestAlloc(t *testing.T) {
	t.Parallel()
	b, err := Alloc(3 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatal("anonymous memory is not zero")
		}
	}
	b[len(b)-1] = 1
	if err := Unmap(b); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1} {
		if _, err := Alloc(n); err == nil {
			t.Fatalf("Alloc(%d) succeeded", n)
		}
	}
	if _, err := Map(os.Stdin, 0, false); err == nil {
		t.Fatal("Map of 0 bytes succeeded")
	}
}

func TestGuardParallelFirstError(t *testing.T) {
	t.Parallel()
	want := errors.New("range 3")
	err := GuardParallel(8, 8, func(start, end int) error {
		if start == 3 {
			return want
		}
		return nil
	})
	if !errors.Is(err, want) {
		t.Fatalf("err = %v", err)
	}
}
