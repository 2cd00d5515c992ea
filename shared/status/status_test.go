package status

import "testing"

func TestCode(t *testing.T) {
	tests := []struct {
		name     string
		code     Code
		num      int // fixed by the proofs table and the wire
		want     string
		terminal bool
	}{
		{"pending", Pending, 0, "pending", false},
		{"witness generated", WitnessGenerated, 1, "witness_generated", false},
		{"proof generated", ProofGenerated, 2, "proof_generated", true},
		{"failed", Failed, 3, "failed", true},
		{"verified", Verified, 4, "verified", true},
		{"verification failed", VerificationFailed, 5, "verification_failed", true},
		{"unknown", Code(9), 9, "status(9)", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if int(tc.code) != tc.num {
				t.Errorf("code = %d, want %d", int(tc.code), tc.num)
			}
			if got := tc.code.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if got := tc.code.Terminal(); got != tc.terminal {
				t.Errorf("Terminal() = %v, want %v", got, tc.terminal)
			}
		})
	}
}
