package stats

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", ms(7), Summary{N: 1, MeanMS: 7, MinMS: 7, P50MS: 7, P90MS: 7, P99MS: 7, MaxMS: 7}},
		{"four", ms(4, 1, 3, 2), Summary{N: 4, MeanMS: 2.5, MinMS: 1, P50MS: 2, P90MS: 4, P99MS: 4, MaxMS: 4}},
		{"hundred", ms(hundred...), Summary{N: 100, MeanMS: 50.5, MinMS: 1, P50MS: 50, P90MS: 90, P99MS: 99, MaxMS: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(1, 0); got != 0 {
		t.Errorf("Ratio(1, 0) = %v, want 0", got)
	}
	if got := Ratio(3, 2); got != 1.5 {
		t.Errorf("Ratio(3, 2) = %v, want 1.5", got)
	}
}
