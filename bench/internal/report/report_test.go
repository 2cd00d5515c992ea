package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteMarkdown(t *testing.T) {
	doc := Document{
		Title:    "T",
		Preamble: []string{"intro"},
		Meta:     [][2]string{{"commit", "abc"}},
		Errors:   []string{"queue: broke\nbadly"},
		Sections: []Section{{
			Title: "S",
			Intro: []string{"how"},
			Tables: []Table{{
				Caption: "cap",
				Header:  []string{"a", "b"},
				Rows:    [][]string{{"x|y", "1"}},
			}},
			Notes: []string{"note"},
		}},
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, doc); err != nil {
		t.Fatal(err)
	}
	want := "# T\n\nintro\n\n|  |  |\n|---|--:|\n| commit | abc |\n\n" +
		"## Errors\n\n- queue: broke badly\n\n" +
		"## S\n\nhow\n\ncap\n\n| a | b |\n|---|--:|\n| x\\|y | 1 |\n\n- note\n\n"
	if got := b.String(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := WriteFiles(dir, Document{Title: "T"}, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil || !strings.HasPrefix(string(md), "# T\n") {
		t.Errorf("results.md = %q, %v", md, err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := json.Unmarshal(js, &v); err != nil || v["n"] != 1 {
		t.Errorf("results.json = %s, %v", js, err)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"F", F(1.256, 2), "1.26"},
		{"X", X(5), "5.00×"},
		{"MiB", MiB(3 << 20), "3.0 MiB"},
		{"GiB", GiB(3 << 29), "1.5 GiB"},
		{"meets", Target(true, "≥ 1"), "meets ≥ 1"},
		{"misses", Target(false, "≥ 1"), "misses ≥ 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}
