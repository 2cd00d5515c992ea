package family

import "testing"

func TestProofTypeCodesAndFamilies(t *testing.T) {
	cases := []struct {
		typ  ProofType
		code int
		fam  Family
	}{
		{"register", 0, Register}, {"dsc", 1, DSC}, {"disclose", 2, Disclose},
		{"register_id", 3, Register}, {"dsc_id", 4, DSC}, {"disclose_id", 5, Disclose},
		{"register_aadhaar", 6, Register}, {"disclose_aadhaar", 7, Disclose},
		{"register_kyc", 8, Register}, {"disclose_kyc", 9, Disclose},
	}
	for _, c := range cases {
		t.Run(string(c.typ), func(t *testing.T) {
			got, err := ParseProofType(string(c.typ))
			if err != nil {
				t.Fatal(err)
			}
			if got.Code() != c.code || got.Family() != c.fam {
				t.Fatalf("%s: code %d family %s, want %d %s", c.typ, got.Code(), got.Family(), c.code, c.fam)
			}
			back, err := ProofTypeFromCode(c.code)
			if err != nil || back != c.typ {
				t.Fatalf("code %d -> %q, %v", c.code, back, err)
			}
		})
	}
	if _, err := ParseProofType("Register"); err == nil {
		t.Fatal("proof types are case sensitive")
	}
	if _, err := ProofTypeFromCode(10); err == nil {
		t.Fatal("code 10 accepted")
	}
}

func TestParseList(t *testing.T) {
	for in, want := range map[string]int{"": 3, "all": 3, "register": 1, "register,dsc,register": 2, " dsc , disclose": 2} {
		got, err := ParseList(in)
		if err != nil || len(got) != want {
			t.Fatalf("ParseList(%q) = %v, %v; want %d families", in, got, err, want)
		}
	}
	if _, err := ParseList("register,proof"); err == nil {
		t.Fatal("unknown family accepted")
	}
}
