package binfile

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func container(t *testing.T, sections ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteHeader(&b, "test", 1, uint32(len(sections))); err != nil {
		t.Fatal(err)
	}
	for i, s := range sections {
		if err := WriteSectionHeader(&b, uint32(i+1), uint64(len(s))); err != nil {
			t.Fatal(err)
		}
		b.Write(s)
	}
	return b.Bytes()
}

// eofReader returns io.EOF with every read that reaches the end, as the
// io.ReaderAt contract allows.
type eofReader struct{ b []byte }

func (r eofReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if off+int64(n) == int64(len(r.b)) {
		return n, io.EOF
	}
	return n, nil
}

func TestOpen(t *testing.T) {
	t.Parallel()
	data := container(t, []byte{1, 2, 3, 4}, bytes.Repeat([]byte{7}, 10))
	for _, r := range []io.ReaderAt{bytes.NewReader(data), eofReader{data}} {
		f, err := Open(r, int64(len(data)), "test", 1)
		if err != nil {
			t.Fatal(err)
		}
		s, err := f.SectionOfSize(2, 10)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.ReadAll(s)
		if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{7}, 10)) {
			t.Fatalf("ReadAll = %v, %v", b, err)
		}
		var got []byte
		err = f.ForEachRecord(s, 5, func(first int, batch []byte) error { got = append(got, batch...); return nil })
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("ForEachRecord = %v, %v", got, err)
		}
		if err := f.ForEachRecord(s, 3, func(int, []byte) error { return nil }); err == nil {
			t.Fatal("ForEachRecord accepted a size that is not a multiple of the record")
		}
		if err := f.ReadAt(s, make([]byte, 4), 7); err == nil {
			t.Fatal("ReadAt past the section end succeeded")
		}
		if _, err := f.Section(3); err == nil {
			t.Fatal("missing section found")
		}
	}
}

func TestOpenRejects(t *testing.T) {
	t.Parallel()
	good := container(t, []byte{1, 2, 3, 4})
	mod := func(f func([]byte)) []byte { b := append([]byte(nil), good...); f(b); return b }
	dup := container(t, []byte{1}, []byte{2})
	dup[12+12+1] = 1 // second section also type 1
	tests := map[string][]byte{
		"short":          good[:11],
		"magic":          mod(func(b []byte) { b[0] = 'x' }),
		"version 0":      mod(func(b []byte) { b[4] = 0 }),
		"version 2":      mod(func(b []byte) { b[4] = 2 }),
		"section count":  mod(func(b []byte) { b[8] = 9 }),
		"section length": mod(func(b []byte) { b[16] = 5 }),
		"truncated":      good[:len(good)-1],
	}
	for name, data := range tests {
		if _, err := Open(bytes.NewReader(data), int64(len(data)), "test", 1); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
	f, err := Open(bytes.NewReader(dup), int64(len(dup)), "test", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Section(1); err == nil {
		t.Error("duplicated section accepted")
	}
}

func TestDecoder(t *testing.T) {
	t.Parallel()
	d := NewDecoder([]byte{1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9})
	if d.Uint32() != 1 || d.Uint64() != 2 || d.Remaining() != 1 || d.Err != nil {
		t.Fatal("decoded wrong values")
	}
	if d.Uint32() != 0 || !errors.Is(d.Err, ErrShort) {
		t.Fatalf("short read: err = %v", d.Err)
	}
	if d.Bytes(1) != nil {
		t.Fatal("reads continue after an error")
	}
}
