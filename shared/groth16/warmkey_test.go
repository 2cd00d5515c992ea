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
	k, _, err := DevSetup(t.Context(), sys, []byte("warm test"))
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
	st, err := pk.Warm(t.Context(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tables) != 5 {
		t.Fatalf("tables %v, want all five MSMs with a budget of 1 GiB", st.Tables)
	}
	if st.TableBytes <= 0 || st.Duration <= 0 || st.TableBytes != pk.Memory().Tables {
		t.Fatalf("stats %+v", st)
	}
	for range 3 {
		proof, public, err := Prove(t.Context(), pk, w)
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
			if _, _, err := Prove(t.Context(), pk, bad); !errors.Is(err, ErrUnsatisfied) {
				t.Fatalf("wire %d: err = %v, want ErrUnsatisfied", i, err)
			}
		}
	})
}

func TestWarmBudget(t *testing.T) {
	t.Parallel()
	pk, w := chainKey(t, 600)
	keyBytes := pk.Memory().Heap
	for _, tc := range []struct {
		name   string
		budget int64
	}{
		{"none", 0},
		{"too small for any copy", 100},
		{"a tenth of the key", keyBytes / 10},
		{"the key's size", keyBytes},
		{"twice the key", 2 * keyBytes},
		{"unlimited", 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := pk.Warm(t.Context(), tc.budget)
			if err != nil {
				t.Fatal(err)
			}
			m := pk.Memory()
			if st.TableBytes > max(tc.budget, 0) || m.Tables != st.TableBytes || pk.TableBytes(tc.budget) != st.TableBytes {
				t.Fatalf("budget %d: Warm built %d bytes (%v), Memory says %d, TableBytes %d",
					tc.budget, st.TableBytes, st.Tables, m.Tables, pk.TableBytes(tc.budget))
			}
			if (st.TableBytes == 0) != (len(st.Tables) == 0) {
				t.Fatalf("tables %v of %d bytes", st.Tables, st.TableBytes)
			}
			t.Logf("budget %d: %v, %d bytes", tc.budget, st.Tables, st.TableBytes)
			if _, _, err := Prove(t.Context(), pk, w); err != nil {
				t.Fatal(err)
			}
			if got := pk.DropTables(); got != st.TableBytes {
				t.Fatalf("DropTables released %d bytes, want %d", got, st.TableBytes)
			}
			if pk.Memory().Tables != 0 {
				t.Fatal("tables still counted after DropTables")
			}
			if _, _, err := Prove(t.Context(), pk, w); err != nil {
				t.Fatal(err)
			}
		})
	}
	if pk.TableBytes(1<<40) <= pk.TableBytes(keyBytes) || pk.TableBytes(keyBytes) == 0 {
		t.Fatal("a larger budget does not buy more tables")
	}
}

func TestWarmCancelled(t *testing.T) {
	t.Parallel()
	pk, w := chainKey(t, 600)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := pk.Warm(ctx, 1<<30); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if pk.warm.Load() != nil {
		t.Fatal("a cancelled Warm left tables behind")
	}
	if _, _, err := Prove(t.Context(), pk, w); err != nil {
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
			_, _, err := Prove(t.Context(), pk, w)
			errs <- err
		})
	}
	wg.Go(func() {
		_, err := pk.Warm(t.Context(), 1<<30)
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
