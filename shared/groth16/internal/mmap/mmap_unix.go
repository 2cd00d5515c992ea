//go:build unix

package mmap

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func mapFile(f *os.File, size int, populate bool) ([]byte, error) {
	flags := unix.MAP_SHARED
	if populate {
		flags |= mapPopulate
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, flags)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return b, nil
}

func unmap(b []byte) error { return unix.Munmap(b) }

func alloc(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("mmap: anonymous %d bytes: %w", size, err)
	}
	return b, nil
}

func willNeed(b []byte) {
	if len(b) > 0 {
		_ = unix.Madvise(b, unix.MADV_WILLNEED)
	}
}
