package envflag

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestApply(t *testing.T) {
	vars := func(flag string) []string {
		switch flag {
		case "database-url":
			return []string{"PROVER_X_DATABASE_URL", "DATABASE_URL"}
		case "ttl":
			return []string{"PROVER_X_TTL"}
		}
		return nil
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantDB  string
		wantTTL time.Duration
		wantErr string
	}{
		{"defaults", nil, nil, "", time.Minute, ""},
		{"own variable", nil, map[string]string{"PROVER_X_DATABASE_URL": "own", "DATABASE_URL": "fallback"}, "own", time.Minute, ""},
		{"fallback", nil, map[string]string{"DATABASE_URL": "fallback"}, "fallback", time.Minute, ""},
		{"command line wins", []string{"--database-url", "flag", "--ttl", "2s"},
			map[string]string{"PROVER_X_DATABASE_URL": "own", "PROVER_X_TTL": "3s"}, "flag", 2 * time.Second, ""},
		{"bad value names its variable", nil, map[string]string{"PROVER_X_TTL": "soon"}, "", time.Minute,
			`PROVER_X_TTL: invalid argument "soon" for "--ttl" flag`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			db := fs.String("database-url", "", "")
			ttl := fs.Duration("ttl", time.Minute, "")
			fs.Bool("unbound", false, "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := Apply(fs, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, vars)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || *db != tc.wantDB || *ttl != tc.wantTTL {
				t.Fatalf("database-url %q ttl %s err %v; want %q %s", *db, *ttl, err, tc.wantDB, tc.wantTTL)
			}
		})
	}
}
