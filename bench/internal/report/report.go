// Package report renders benchmark results as markdown: sections of
// definitions, tables and notes. The JSON form is the benchmarks' own result
// types, written by WriteJSON.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Section is one benchmark's part of results.md.
type Section struct {
	Title string
	// Intro paragraphs: what was run and how each number is defined.
	Intro  []string
	Tables []Table
	// Notes: what could not be measured, and why.
	Notes []string
}

// Table is a markdown table.
type Table struct {
	Caption string
	Header  []string
	Rows    [][]string
}

// Row appends a row of cells.
func (t *Table) Row(cells ...string) { t.Rows = append(t.Rows, cells) }

// Document is all of results.md.
type Document struct {
	Title    string
	Preamble []string // paragraphs before the sections
	Meta     [][2]string
	Sections []Section
	Errors   []string
}

// WriteMarkdown writes d as markdown.
func WriteMarkdown(w io.Writer, d Document) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", d.Title)
	for _, p := range d.Preamble {
		fmt.Fprintf(&b, "%s\n\n", p)
	}
	if len(d.Meta) > 0 {
		meta := Table{Header: []string{"", ""}}
		for _, kv := range d.Meta {
			meta.Row(kv[0], kv[1])
		}
		writeTable(&b, meta)
	}
	if len(d.Errors) > 0 {
		b.WriteString("## Errors\n\n")
		for _, e := range d.Errors {
			fmt.Fprintf(&b, "- %s\n", oneLine(e))
		}
		b.WriteString("\n")
	}
	for _, s := range d.Sections {
		fmt.Fprintf(&b, "## %s\n\n", s.Title)
		for _, p := range s.Intro {
			fmt.Fprintf(&b, "%s\n\n", p)
		}
		for _, t := range s.Tables {
			writeTable(&b, t)
		}
		if len(s.Notes) > 0 {
			for _, n := range s.Notes {
				fmt.Fprintf(&b, "- %s\n", oneLine(n))
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTable(b *strings.Builder, t Table) {
	if t.Caption != "" {
		fmt.Fprintf(b, "%s\n\n", t.Caption)
	}
	row := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			fmt.Fprintf(b, " %s |", strings.ReplaceAll(oneLine(c), "|", `\|`))
		}
		b.WriteString("\n")
	}
	row(t.Header)
	b.WriteString("|")
	for i := range t.Header {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("--:|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	b.WriteString("\n")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// WriteFiles writes results.md and results.json into dir (created if
// missing). Each file is written to a temporary name and renamed, so a
// reader never sees half a file.
func WriteFiles(dir string, d Document, results any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var md strings.Builder
	if err := WriteMarkdown(&md, d); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encode results.json: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, "results.md"), []byte(md.String())); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "results.json"), append(js, '\n'))
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// F formats v with the given decimals.
func F(v float64, decimals int) string { return strconv.FormatFloat(v, 'f', decimals, 64) }

// X formats a ratio as "1.23×".
func X(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "×" }

// MiB formats bytes as MiB with one decimal.
func MiB(bytes int64) string { return strconv.FormatFloat(float64(bytes)/(1<<20), 'f', 1, 64) + " MiB" }

// GiB formats bytes as GiB with one decimal.
func GiB(bytes int64) string { return strconv.FormatFloat(float64(bytes)/(1<<30), 'f', 1, 64) + " GiB" }

// Target renders whether value meets a target: "✓" or "✗", with the target.
func Target(ok bool, target string) string {
	if ok {
		return "meets " + target
	}
	return "misses " + target
}
