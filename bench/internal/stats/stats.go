// Package stats summarises samples of durations: count, mean, quantiles.
//
// Quantiles use the nearest-rank method on the sorted samples (p-quantile =
// the ⌈p·n⌉-th smallest), so every reported value is a value that was
// measured.
package stats

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of durations, in milliseconds for the reports.
type Summary struct {
	N      int     `json:"n"`
	MeanMS float64 `json:"mean_ms"`
	MinMS  float64 `json:"min_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// Summarize computes the summary of ds (which it does not modify). An empty
// sample gives the zero Summary.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Summary{
		N:      len(s),
		MeanMS: MS(sum / time.Duration(len(s))),
		MinMS:  MS(s[0]),
		P50MS:  MS(Quantile(s, 0.50)),
		P90MS:  MS(Quantile(s, 0.90)),
		P99MS:  MS(Quantile(s, 0.99)),
		MaxMS:  MS(s[len(s)-1]),
	}
}

// Quantile is the nearest-rank p-quantile of sorted (0 < p ≤ 1); 0 for an
// empty sample.
func Quantile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Median is the median of ds (nearest rank), 0 when empty.
func Median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return Quantile(s, 0.5)
}

// MS converts d to milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Ratio is a/b, or 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Round keeps digits decimals, for readable JSON.
func Round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
