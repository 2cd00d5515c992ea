pragma circom 2.1.6;

// disclose_demo: stands in for the disclose family (vc_and_disclose and variants).
//
// The holder proves, without revealing the underlying attributes, that
//   * they know the secret and attributes behind `commitment` (a Poseidon chain over
//     secret, dateOfBirth, expiryDate, nationality, documentNumber: the identity commitment
//     registered earlier; a verifier checks it against its registry),
//   * they are at least `minimumAge` years old on `currentDate`,
//   * their document has not expired on `currentDate`,
//   * their nationality is none of the `forbiddenNationalities` (sanctions-list style check),
// and outputs a per-scope `nullifier` (one proof per person per scope) and, only if
// `discloseNationality` is 1, their nationality (else 0).
//
// Dates are YYYYMMDD integers: "at least A years old on D" is exactly D >= DOB + A*10000.
//
// Public signals (snarkjs order): commitment, nullifier, revealedNationality,
//   currentDate, minimumAge, scope, discloseNationality, forbiddenNationalities[4].

include "lib.circom";

template DiscloseDemo(nForbidden) {
    // private
    signal input secret;
    signal input dateOfBirth;      // YYYYMMDD
    signal input expiryDate;       // YYYYMMDD
    signal input nationality;      // ISO 3166-1 numeric, 1..999
    signal input documentNumber;   // document number packed into a field element
    // public
    signal input currentDate;      // YYYYMMDD
    signal input minimumAge;       // years, < 256
    signal input scope;            // the verifier's application scope
    signal input discloseNationality; // 0 or 1
    signal input forbiddenNationalities[nForbidden];

    signal output commitment;
    signal output nullifier;
    signal output revealedNationality;

    // Range checks make the comparators sound.
    RangeCheck(32)(dateOfBirth);
    RangeCheck(32)(expiryDate);
    RangeCheck(32)(currentDate);
    RangeCheck(8)(minimumAge);
    RangeCheck(10)(nationality);
    AssertBool()(discloseNationality);

    // Age: currentDate >= dateOfBirth + minimumAge * 10000.
    signal ageOk <== GreaterEqThan(33)([currentDate, dateOfBirth + minimumAge * 10000]);
    ageOk === 1;

    // Not expired: expiryDate > currentDate.
    signal notExpired <== GreaterThan(32)([expiryDate, currentDate]);
    notExpired === 1;

    // Nationality not on the list.
    signal hit[nForbidden];
    var hits = 0;
    for (var i = 0; i < nForbidden; i++) {
        hit[i] <== IsEqual()([nationality, forbiddenNationalities[i]]);
        hits += hit[i];
    }
    hits === 0;

    commitment <== PoseidonChain(5)([secret, dateOfBirth, expiryDate, nationality, documentNumber]);
    nullifier <== Poseidon(2)([secret, scope]);
    revealedNationality <== nationality * discloseNationality;
}

component main {public [currentDate, minimumAge, scope, discloseNationality, forbiddenNationalities]} = DiscloseDemo(4);
