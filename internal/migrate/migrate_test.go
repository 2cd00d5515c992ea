package migrate_test

import (
	"os"
	"testing"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/internal/migrate"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// stacktest's databases are cloned from a template it migrated with Up; a
// second Up finds nothing to apply.
func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	pool := stacktest.Postgres(t)
	applied, err := migrate.Up(t.Context(), pool)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second migrate applied %v, %v", applied, err)
	}
}
