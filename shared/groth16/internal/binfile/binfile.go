// Package binfile reads and writes the iden3 binary container shared by
// circom's .r1cs and .wtns files and snarkjs's .zkey files.
//
// A container is a 4-byte magic ("r1cs", "wtns", "zkey"), a uint32 version,
// a uint32 section count, then that many sections, each a uint32 type, a
// uint64 byte length and the payload. All integers are little-endian.
// Sections may appear in any order.
//
// Open only reads the 12-byte section headers, checking every declared length
// against the real file size, so that callers can validate a section's size
// against their own header before allocating anything for it.
package binfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
)

// headerSize is the magic, version and section count.
const headerSize = 12

// sectionHeaderSize is a section's type and length.
const sectionHeaderSize = 12

// Section locates one section's payload inside the file.
type Section struct {
	ID     uint32
	Offset int64 // of the payload, after the section header
	Size   int64
}

// File is an opened container: its version and section table.
type File struct {
	Version  uint32
	r        io.ReaderAt
	size     int64
	sections map[uint32][]Section
}

// Open reads the container header and the section table of r, whose total
// length is size. It checks the magic, that the version is between 1 and
// maxVersion, and that every section lies inside the file.
func Open(r io.ReaderAt, size int64, magic string, maxVersion uint32) (*File, error) {
	if len(magic) != 4 {
		return nil, fmt.Errorf("binfile: magic %q is not 4 bytes", magic)
	}
	if size < headerSize {
		return nil, fmt.Errorf("file is %d bytes, shorter than the %d-byte header", size, headerSize)
	}
	var h [headerSize]byte
	if err := readAt(r, h[:], 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if string(h[0:4]) != magic {
		return nil, fmt.Errorf("magic is %q, want %q", printable(h[0:4]), magic)
	}
	f := &File{
		Version:  binary.LittleEndian.Uint32(h[4:8]),
		r:        r,
		size:     size,
		sections: make(map[uint32][]Section),
	}
	if f.Version == 0 || f.Version > maxVersion {
		return nil, fmt.Errorf("version %d not supported (want 1..%d)", f.Version, maxVersion)
	}
	n := binary.LittleEndian.Uint32(h[8:12])
	if uint64(n) > uint64((size-headerSize)/sectionHeaderSize) {
		return nil, fmt.Errorf("header declares %d sections, more than a %d-byte file can hold", n, size)
	}
	pos := int64(headerSize)
	for i := uint32(0); i < n; i++ {
		if size-pos < sectionHeaderSize {
			return nil, fmt.Errorf("section %d header at offset %d runs past the end of the file", i, pos)
		}
		var sh [sectionHeaderSize]byte
		if err := readAt(r, sh[:], pos); err != nil {
			return nil, fmt.Errorf("read section %d header: %w", i, err)
		}
		id := binary.LittleEndian.Uint32(sh[0:4])
		sz := binary.LittleEndian.Uint64(sh[4:12])
		pos += sectionHeaderSize
		if sz > uint64(size-pos) {
			return nil, fmt.Errorf("section type %d declares %d bytes but only %d remain in the file", id, sz, size-pos)
		}
		f.sections[id] = append(f.sections[id], Section{ID: id, Offset: pos, Size: int64(sz)})
		pos += int64(sz)
	}
	return f, nil
}

// Has reports whether at least one section of type id is present.
func (f *File) Has(id uint32) bool { return len(f.sections[id]) > 0 }

// Section returns the only section of type id. A missing or duplicated
// section is an error.
func (f *File) Section(id uint32) (Section, error) {
	s := f.sections[id]
	switch len(s) {
	case 0:
		return Section{}, fmt.Errorf("section %d is missing", id)
	case 1:
		return s[0], nil
	default:
		return Section{}, fmt.Errorf("section %d appears %d times", id, len(s))
	}
}

// SectionOfSize returns the only section of type id and checks that its
// length is exactly want bytes.
func (f *File) SectionOfSize(id uint32, want int64) (Section, error) {
	s, err := f.Section(id)
	if err != nil {
		return Section{}, err
	}
	if s.Size != want {
		return Section{}, fmt.Errorf("section %d is %d bytes, want %d", id, s.Size, want)
	}
	return s, nil
}

// ReadAll returns the payload of s. Callers use it only for sections whose
// size they have already bounded (headers), never for bulk data.
func (f *File) ReadAll(s Section) ([]byte, error) {
	b := make([]byte, s.Size)
	if err := readAt(f.r, b, s.Offset); err != nil {
		return nil, fmt.Errorf("read section %d: %w", s.ID, err)
	}
	return b, nil
}

// chunkSize bounds the buffer ForEachRecord reads into.
const chunkSize = 1 << 20

// ForEachRecord reads the payload of s as consecutive records of recordSize
// bytes and calls fn with batches of whole records (first is the index of the
// batch's first record). The payload size must be a multiple of recordSize.
// The buffer is reused between calls: fn must not keep it. fn's error stops
// the scan and is returned unchanged.
func (f *File) ForEachRecord(s Section, recordSize int, fn func(first int, batch []byte) error) error {
	if recordSize <= 0 || s.Size%int64(recordSize) != 0 {
		return fmt.Errorf("section %d is %d bytes, not a multiple of %d", s.ID, s.Size, recordSize)
	}
	per := max(chunkSize/recordSize, 1)
	buf := make([]byte, int(min(int64(per*recordSize), s.Size)))
	total := int(s.Size / int64(recordSize))
	for first := 0; first < total; first += per {
		n := min(per, total-first)
		b := buf[:n*recordSize]
		if err := readAt(f.r, b, s.Offset+int64(first)*int64(recordSize)); err != nil {
			return fmt.Errorf("read section %d: %w", s.ID, err)
		}
		if err := fn(first, b); err != nil {
			return err
		}
	}
	return nil
}

// ReadAt fills b from the payload of s starting at off bytes into it.
func (f *File) ReadAt(s Section, b []byte, off int64) error {
	if off < 0 || off > s.Size || int64(len(b)) > s.Size-off {
		return fmt.Errorf("read of %d bytes at %d is outside section %d (%d bytes)", len(b), off, s.ID, s.Size)
	}
	return readAt(f.r, b, s.Offset+off)
}

// readAt is ReaderAt.ReadAt that accepts io.EOF together with a full read,
// which the io.ReaderAt contract allows at the end of the input.
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Decoder reads little-endian integers and raw bytes from a payload that is
// already in memory. The first short read sets Err and later reads return
// zero values, so a caller checks Err once at the end.
type Decoder struct {
	b   []byte
	off int
	Err error
}

// NewDecoder returns a decoder over b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// ErrShort is set on a Decoder that ran past the end of its payload.
var ErrShort = errors.New("payload ends early")

// Bytes returns the next n bytes (a sub-slice, not a copy).
func (d *Decoder) Bytes(n int) []byte {
	if d.Err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.Err = fmt.Errorf("%w: need %d bytes at offset %d, have %d", ErrShort, n, d.off, len(d.b)-d.off)
		return nil
	}
	out := d.b[d.off : d.off+n]
	d.off += n
	return out
}

// Uint32 returns the next little-endian uint32.
func (d *Decoder) Uint32() uint32 {
	b := d.Bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// Uint64 returns the next little-endian uint64.
func (d *Decoder) Uint64() uint64 {
	b := d.Bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// Remaining is the number of unread bytes.
func (d *Decoder) Remaining() int { return len(d.b) - d.off }

// Offset is the number of bytes read so far.
func (d *Decoder) Offset() int { return d.off }

// WriteHeader writes the container header.
func WriteHeader(w io.Writer, magic string, version, nSections uint32) error {
	if len(magic) != 4 {
		return fmt.Errorf("binfile: magic %q is not 4 bytes", magic)
	}
	var h [headerSize]byte
	copy(h[0:4], magic)
	binary.LittleEndian.PutUint32(h[4:8], version)
	binary.LittleEndian.PutUint32(h[8:12], nSections)
	_, err := w.Write(h[:])
	return err
}

// WriteSectionHeader writes a section's type and payload length; the caller
// then writes exactly size bytes of payload.
func WriteSectionHeader(w io.Writer, id uint32, size uint64) error {
	if size > math.MaxInt64 {
		return fmt.Errorf("binfile: section %d size %d too large", id, size)
	}
	var h [sectionHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:4], id)
	binary.LittleEndian.PutUint64(h[4:12], size)
	_, err := w.Write(h[:])
	return err
}

// printable renders a magic for an error message without control bytes.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// LittleEndian returns x as n little-endian bytes (x must fit), the way the
// container stores field primes.
func LittleEndian(x *big.Int, n int) []byte {
	be := x.FillBytes(make([]byte, n))
	for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
		be[i], be[j] = be[j], be[i]
	}
	return be
}
