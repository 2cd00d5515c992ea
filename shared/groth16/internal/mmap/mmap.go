// Package mmap maps files and anonymous memory outside the Go heap, for
// proving keys used in place and for the large buffers of a proof.
//
// A file mapping is read-only and shared: its pages are the page cache's,
// counted once however many processes map the file, and the kernel can
// reclaim them under pressure (they are read back from the file). Anonymous
// memory is private, zero-filled, and returned to the system by Free at once
// (unlike the Go heap, which keeps freed memory until a later collection and
// grows to twice its live size before collecting).
//
// Reading a file mapping past the end of a file that was truncated after it
// was mapped raises SIGBUS; see Guard.
package mmap

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// ErrFault is wrapped by the error Guard returns when the protected code
// read memory that is no longer backed: a mapped file that was truncated (or
// replaced in place) while in use.
var ErrFault = errors.New("mmap: memory fault reading a mapped file (was it truncated or rewritten while in use?)")

// Guard runs fn with the runtime's panic-on-fault mode set for the calling
// goroutine, so that a read of a mapped page that no longer exists becomes
// an error wrapping ErrFault instead of killing the process. Every goroutine
// that reads a file mapping must run its work inside Guard: the mode is per
// goroutine. Other panics propagate unchanged.
func Guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if f, ok := r.(interface{ Addr() uintptr }); ok {
				if _, isRuntime := r.(runtime.Error); isRuntime {
					err = fmt.Errorf("%w (address %#x)", ErrFault, f.Addr())
					return
				}
			}
			panic(r)
		}
	}()
	return fn()
}

// Map maps the first size bytes of f read-only and shared. populate asks the
// kernel to map every page now (one system call instead of a fault per
// page, for data that will all be read). The mapping stays valid after f is
// closed; release it with Unmap.
func Map(f *os.File, size int64, populate bool) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("mmap: cannot map %d bytes", size)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("mmap: %d bytes do not fit in the address space", size)
	}
	return mapFile(f, int(size), populate)
}

// Unmap releases a mapping made by Map or Alloc. b must be the whole slice
// they returned.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unmap(b)
}

// Alloc returns size bytes of zeroed anonymous memory outside the Go heap.
// Release it with Unmap; it must hold no Go pointers.
func Alloc(size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("mmap: cannot allocate %d bytes", size)
	}
	return alloc(size)
}

// WillNeed tells the kernel that b (a file mapping) will be read soon, so it
// can start reading pages that are not in the page cache.
func WillNeed(b []byte) { willNeed(b) }

// GuardParallel splits [0, n) into at most tasks ranges and runs fn on each
// in its own goroutine under Guard, returning the first error. tasks < 2
// runs fn once on the calling goroutine.
func GuardParallel(tasks, n int, fn func(start, end int) error) error {
	if n <= 0 {
		return nil
	}
	tasks = max(1, min(tasks, n))
	if tasks == 1 {
		return Guard(func() error { return fn(0, n) })
	}
	errs := make(chan error, tasks)
	for t := range tasks {
		start, end := n*t/tasks, n*(t+1)/tasks
		go func() { errs <- Guard(func() error { return fn(start, end) }) }()
	}
	var first error
	for range tasks {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
