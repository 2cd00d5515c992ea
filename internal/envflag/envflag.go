// Package envflag lets environment variables set the flags a command line
// left unset, the rule prover-api and prover-worker share: a flag given on
// the command line wins, then its own variable, then any fallback variable
// (DATABASE_URL, NATS_URL).
package envflag

import (
	"fmt"

	"github.com/spf13/pflag"
)

// Vars names the environment variables of a flag, tried in order; nil or
// empty when the flag has none.
type Vars func(flag string) []string

// Apply sets every flag of fs that the command line did not set from the
// first of its variables that lookup (os.LookupEnv) finds. An invalid value
// is an error naming its variable ("PROVER_API_SESSION_TTL: …"); the
// flags are visited in fs's order and the first error stops.
func Apply(fs *pflag.FlagSet, lookup func(string) (string, bool), vars Vars) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		for _, name := range vars(f.Name) {
			v, ok := lookup(name)
			if !ok {
				continue
			}
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s: %w", name, serr)
			}
			return
		}
	})
	return err
}
