package groth16

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

// chainKey is a proving key and witness for a chain circuit of n
// constraints: big enough that the warm MSMs split their buckets between
// CPUs, small enough to build in a moment.
func chainKey(t *testing.T, n int) (*ProvingKey, []fr.Element) {
	t.Helper()
	sys, w := chainCircuit(n)
	k, _, err := DevSetup(context.Background(), sys, []byte("warm test"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewProvingKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pk, w
}

func TestWarmProve(t *testing.T) {
	t.Parallel()
	pk, w := chainKey(t, 3000)
	st, err := pk.Warm(context.Background(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"H", "A", "C", "B1", "B2"}; !slices.Equal(st.Tables, want) {
		t.Fatalf("tables %v, want %v", st.Tables, want)
	}
	if st.TableBytes <= 0 || st.Duration <= 0 {
		t.Fatalf("stats %+v", st)
	}
	for range 3 {
		proof, public, err := Prove(context.Background(), pk, w)
		if err != nil {
			t.Fatal(err)
		}
		// Prove checks its own proof; check again from outside.
		if err := pk.VerifyingKey().Verify(proof, public); err != nil {
			t.Fatal(err)
		}
		if !public[0].Equal(&w[1]) || !public[1].Equal(&w[2]) {
			t.Fatal("public signals are not the witness's")
		}
	}

	t.Run("unsatisfying witness", func(t *testing.T) {
		// (The chain never uses its last wire, z_n: the last link writes y.)
		for _, i := range []int{1, 2, 3, len(w) / 2, len(w) - 2} {
			bad := slices.Clone(w)
			bad[i].SetUint64(1) // scalars of 1 take the tables' shortcut
			if bad[i].Equal(&w[i]) {
				bad[i].SetUint64(2)
			}
			if _, _, err := Prove(context.Background(), pk, bad); !errors.Is(err, ErrUnsatisfied) {
				t.Fatalf("wire %d: err = %v, want ErrUnsatisfied", i, err)
			}
		}
	})
}

func TestWarmBudget(t *testing.T) {
	t.Parallel()
	pk, w := chainKey(t, 600)
	n := pk.DomainSize()
	hBytes := warmBytesG1(n, warmWindow(n))
	for _, tc := range []struct {
		name   string
		budget int64
		want   []string
	}{
		{"none", 0, nil},
		{"twiddles only", twiddleBytes(n), nil},
		{"twiddles and H", twiddleBytes(n) + hBytes, []string{"H"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := pk.Warm(context.Background(), tc.budget)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st.Tables, tc.want) || st.TableBytes > tc.budget {
				t.Fatalf("budget %d: tables %v (%d bytes), want %v", tc.budget, st.Tables, st.TableBytes, tc.want)
			}
			if _, _, err := Prove(context.Background(), pk, w); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWarmCancelled(t *testing.T) {
	t.Parallel()
	pk, w := chainKey(t, 600)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pk.Warm(ctx, 1<<30); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if pk.warm.Load() != nil {
		t.Fatal("a cancelled Warm left tables behind")
	}
	if _, _, err := Prove(context.Background(), pk, w); err != nil {
		t.Fatal(err)
	}
}

// TestWarmWhileProving warms a key that other goroutines are proving with
// (run with -race).
func TestWarmWhileProving(t *testing.T) {
	t.Parallel()
	pk, w := chainKey(t, 1000)
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 4 {
		wg.Go(func() {
			_, _, err := Prove(context.Background(), pk, w)
			errs <- err
		})
	}
	wg.Go(func() {
		_, err := pk.Warm(context.Background(), 1<<30)
		errs <- err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
