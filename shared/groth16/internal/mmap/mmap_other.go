//go:build !unix

package mmap

import (
	"fmt"
	"io"
	"os"
)

// Without mmap the file is read into the heap: correct, not shared.

func mapFile(f *os.File, size int, _ bool) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(size)), b); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return b, nil
}

func unmap([]byte) error { return nil }

func alloc(size int) ([]byte, error) { return make([]byte, size), nil }

func willNeed([]byte) {}
