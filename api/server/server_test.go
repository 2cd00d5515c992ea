package server_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/openpassport/prover-fleet/api/internal/apitest"
	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/vectors"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
)

// appBody is a vector's request body as the app sends it: JSON.stringify
// output, that is the file's object without the indentation.
func appBody(t *testing.T, raw json.RawMessage, replace map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	must(t, json.Compact(&b, raw))
	out := b.String()
	for old, repl := range replace {
		out = strings.ReplaceAll(out, old, repl)
	}
	return []byte(out)
}

func intsJSON(ints []int) string {
	b, _ := json.Marshal(ints)
	return string(b)
}

// TestVectorsThroughTheFrontend replays the app's exact hello and submit
// bodies, both with "id": 1 on one WebSocket, through the whole frontend
// with the vector's server key injected; then checks the proofs row and
// the job on the stream. The compressed form replaces the client key by its
// 33-byte encoding (same point, so the same shared key) and the uuid by a
// fresh one.
func TestVectorsThroughTheFrontend(t *testing.T) {
	t.Parallel()
	vs, err := vectors.Load()
	must(t, err)
	e := setup(t, options{})
	for _, form := range []string{"uncompressed", "compressed"} {
		for _, v := range vs {
			t.Run(form+"/"+v.Name, func(t *testing.T) {
				var params struct {
					UUID string `json:"uuid"`
				}
				var hello struct {
					Params json.RawMessage `json:"params"`
				}
				must(t, json.Unmarshal(v.HelloRequest, &hello))
				must(t, json.Unmarshal(hello.Params, &params))
				id, sentKey := params.UUID, vectors.Bytes(v.ClientPublicKey)
				replace := map[string]string{}
				if form == "compressed" {
					id = uuid.NewString()
					sentKey = vectors.Bytes(v.ClientPublicKeyComp)
					replace[params.UUID] = id
					replace[intsJSON(v.ClientPublicKey)] = intsJSON(v.ClientPublicKeyComp)
				}
				helloBody := appBody(t, v.HelloRequest, replace)
				submitBody := appBody(t, v.SubmitRequest, replace)
				if !bytes.Contains(helloBody, []byte(`"id":1`)) || !bytes.Contains(submitBody, []byte(`"id":1`)) {
					t.Fatal("the app's bodies carry id 1")
				}
				priv, err := ecdh.P256().NewPrivateKey(vectors.Hex(v.ServerPrivateKeyHex))
				must(t, err)
				e.Keys.Set(priv)

				ws := e.dialWS()
				r := ws.send(t, helloBody)
				if string(r.ID) != "1" {
					t.Fatalf("hello answer id %s, want 1", r.ID)
				}
				var res protocol.HelloResult
				wantResult(t, r, &res)
				if res.UUID != id {
					t.Fatalf("hello uuid %q, want %q", res.UUID, id)
				}
				doc, err := e.Verifier.Verify(res.Attestation, sentKey)
				if err != nil {
					t.Fatalf("attestation: %v", err)
				}
				if !bytes.Equal(doc.PublicKey, vectors.Bytes(v.ServerPublicKey)) {
					t.Fatalf("attested public_key %x, want the session's server key", doc.PublicKey)
				}

				r = ws.send(t, submitBody)
				if string(r.ID) != "1" {
					t.Fatalf("submit answer id %s, want 1", r.ID)
				}
				var got string
				wantResult(t, r, &got)
				if got != id {
					t.Fatalf("submit answered %q, want %q", got, id)
				}
				e.checkRecordedAndQueued(t, id, v.Plaintext)
			})
		}
	}
	for _, v := range vs {
		if strings.Contains(e.Logs.String(), v.SharedKeyHex) {
			t.Fatal("a shared key appears in the logs")
		}
	}
}

// checkRecordedAndQueued checks the proofs row and the job of a submitted
// plaintext request.
func (e *env) checkRecordedAndQueued(t *testing.T, id, plaintext string) {
	t.Helper()
	var req struct {
		Type         family.ProofType `json:"type"`
		Onchain      bool             `json:"onchain"`
		EndpointType string           `json:"endpointType"`
		Endpoint     string           `json:"endpoint"`
		Circuit      struct {
			Name   string `json:"name"`
			Inputs string `json:"inputs"`
		} `json:"circuit"`
	}
	must(t, json.Unmarshal([]byte(plaintext), &req))
	row, err := e.Store.Get(t.Context(), id)
	must(t, err)
	if row.Status != status.Pending || row.ProofType != req.Type || row.Circuit != req.Circuit.Name ||
		row.Onchain != req.Onchain || row.EndpointType != req.EndpointType || row.Endpoint != req.Endpoint ||
		row.Version != 1 || row.Proof != nil || row.PublicInputs != nil {
		t.Fatalf("row %+v does not match request %+v", row, req)
	}
	if time.Since(row.CreatedAt) > time.Minute {
		t.Fatalf("created_at %v", row.CreatedAt)
	}
	// The row keeps the job's sealed inputs, for a reconciler to publish
	// the job again should it be lost.
	kept, err := e.Store.OpenJobs(t.Context(), []family.ProofType{req.Type}, time.Now().Add(time.Second), store.Cursor{}, 1000)
	must(t, err)
	if !slices.ContainsFunc(kept, func(j store.OpenJob) bool { return j.ID == id }) {
		t.Fatalf("the sealed job of %s is not kept", id)
	}
	msg := e.FetchJob(t, req.Type.Family())
	if want := jobqueue.JobSubject(req.Type.Family(), req.Circuit.Name, id); msg.Subject() != want {
		t.Fatalf("job subject %q, want %q", msg.Subject(), want)
	}
	if got := msg.Headers().Get(nats.MsgIdHdr); got != id {
		t.Fatalf("Nats-Msg-Id %q, want %q", got, id)
	}
	env, err := job.Unmarshal(msg.Data())
	must(t, err)
	if env.RequestID != id || env.ProofType != req.Type || env.Circuit != req.Circuit.Name {
		t.Fatalf("envelope %+v", env)
	}
	if bytes.Contains(msg.Data(), []byte(req.Circuit.Inputs)) {
		t.Fatal("the circuit inputs travel in clear on the stream")
	}
	inputs, err := e.Sealer.Open(id, env.Sealed)
	must(t, err)
	if string(inputs) != req.Circuit.Inputs {
		t.Fatalf("sealed inputs open to %q, want %q", inputs, req.Circuit.Inputs)
	}
	if strings.Contains(e.Logs.String(), req.Circuit.Inputs) {
		t.Fatal("circuit inputs appear in the logs")
	}
}

func TestStatusAndProofsEndpoint(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ctx := t.Context()
	ws := e.dialWS()
	s := e.hello(t, ws, uuid.NewString())
	wantResult(t, ws.send(t, s.submitBody(t, request("dsc", "dsc_sha256_rsa_65537_4096", `{"a":"1"}`, nil))), nil)

	statusOver := func(tr transport) map[string]any {
		var st map[string]any
		wantResult(t, tr.send(t, body(t, 7, protocol.MethodStatus, map[string]any{"uuid": s.uuid})), &st)
		return st
	}
	get := func(id string) (int, map[string]any) {
		resp, err := http.Get(e.HTTP.URL + "/v1/proofs/" + id)
		must(t, err)
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var m map[string]any
		must(t, json.NewDecoder(resp.Body).Decode(&m))
		return resp.StatusCode, m
	}

	st := statusOver(ws)
	for _, k := range []string{"uuid", "status", "proof_type", "circuit_name", "created_at", "witness_generated_at",
		"proof_generated_at", "proof", "public_inputs", "reason"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("status lacks %q: %v", k, st)
		}
	}
	if st["uuid"] != s.uuid || st["status"] != 0.0 || st["proof_type"] != 1.0 || st["circuit_name"] != "dsc_sha256_rsa_65537_4096" ||
		st["proof"] != nil || st["public_inputs"] != nil || st["witness_generated_at"] != nil || st["reason"] != nil {
		t.Fatalf("pending status %v", st)
	}
	if code, m := get(s.uuid); code != http.StatusOK || !equalJSON(m, st) {
		t.Fatalf("GET: %d %v, want 200 %v", code, m, st)
	}

	// A worker moves the row on.
	_, err := e.Store.MarkWitnessGenerated(ctx, s.uuid)
	must(t, err)
	proof := json.RawMessage(`{"pi_a":["1","2","1"],"pi_b":[["1","2"],["3","4"],["1","0"]],"pi_c":["5","6","1"],"protocol":"groth16"}`)
	_, err = e.Store.MarkProofGenerated(ctx, s.uuid, proof, []string{"7", "8"})
	must(t, err)
	for _, tr := range []transport{ws, e.httpTransport()} {
		st = statusOver(tr)
		if st["status"] != 2.0 || st["witness_generated_at"] == nil || st["proof_generated_at"] == nil ||
			st["public_inputs"] == nil || st["proof"].(map[string]any)["protocol"] != "groth16" {
			t.Fatalf("%s: proven status %v", tr.name(), st)
		}
	}
	if code, m := get(s.uuid); code != http.StatusOK || !equalJSON(m, st) {
		t.Fatalf("GET after proof: %d %v", code, m)
	}

	unknown := uuid.NewString()
	for _, tr := range e.transports() {
		wantError(t, tr.send(t, body(t, 1, protocol.MethodStatus, map[string]any{"uuid": unknown})), -32600, "UUID not found")
		wantError(t, tr.send(t, body(t, 1, protocol.MethodStatus, []any{"nope"})), -32602, `Invalid params: param "uuid": must be a UUID`)
	}
	if code, m := get(unknown); code != http.StatusNotFound || m["error"].(map[string]any)["message"] != "UUID not found" {
		t.Fatalf("GET unknown: %d %v", code, m)
	}
	if code, m := get("not-a-uuid"); code != http.StatusBadRequest || m["error"].(map[string]any)["code"] != -32602.0 {
		t.Fatalf("GET bad uuid: %d %v", code, m)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestSubscribe follows a request from pending to proven through NATS
// status events published as a worker would, with the row updated first.
func TestSubscribe(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ctx := t.Context()
	ws := e.dialWS()
	s := e.hello(t, ws, uuid.NewString())
	wantResult(t, ws.send(t, s.submitBody(t, request("register", "register_demo", `{"a":"1"}`, nil))), nil)

	var cur protocol.Status
	wantResult(t, ws.send(t, body(t, 2, protocol.MethodSubscribe, map[string]any{"uuid": s.uuid})), &cur)
	if cur.UUID != s.uuid || cur.Status != status.Pending {
		t.Fatalf("subscribe answered %+v", cur)
	}
	notification := func() protocol.Status {
		t.Helper()
		r := ws.read(t)
		if r.Method != protocol.NotifyStatusUpdate || r.ID != nil {
			t.Fatalf("got %+v, want an %s notification", r, protocol.NotifyStatusUpdate)
		}
		var st protocol.Status
		must(t, json.Unmarshal(r.Params, &st))
		return st
	}
	publish := func(code status.Code) {
		must(t, e.Events.PublishStatus(ctx, job.StatusEvent{RequestID: s.uuid, Status: code, At: time.Now()}))
	}

	_, err := e.Store.MarkWitnessGenerated(ctx, s.uuid)
	must(t, err)
	publish(status.WitnessGenerated)
	if st := notification(); st.Status != status.WitnessGenerated || st.WitnessGeneratedAt == nil || st.HasProof() {
		t.Fatalf("first update %+v", st)
	}
	publish(status.WitnessGenerated) // a duplicate event: no change, no notification
	_, err = e.Store.MarkProofGenerated(ctx, s.uuid, json.RawMessage(`{"protocol":"groth16"}`), []string{"1"})
	must(t, err)
	publish(status.ProofGenerated)
	st := notification()
	if st.Status != status.ProofGenerated || string(st.Proof) != `{"protocol":"groth16"}` || len(st.PublicInputs) != 1 {
		t.Fatalf("terminal update %+v", st)
	}

	// Terminal: the subscription is over. Another event makes no
	// notification: the next message on the socket is the health answer.
	publish(status.Verified)
	time.Sleep(200 * time.Millisecond)
	r := ws.send(t, body(t, 3, protocol.MethodHealth, nil))
	if r.Method != "" || string(r.ID) != "3" {
		t.Fatalf("after the terminal update got %+v, want the health answer", r)
	}

	// Subscribing to a terminal request answers its status and sends nothing.
	wantResult(t, ws.send(t, body(t, 4, protocol.MethodSubscribe, []any{s.uuid})), &cur)
	if cur.Status != status.ProofGenerated {
		t.Fatalf("subscribe on a proven request answered %+v", cur)
	}
	wantError(t, ws.send(t, body(t, 5, protocol.MethodSubscribe, map[string]any{"uuid": uuid.NewString()})), -32600, "UUID not found")
	wantError(t, e.httpTransport().send(t, body(t, 6, protocol.MethodSubscribe, map[string]any{"uuid": s.uuid})),
		-32600, "openpassport_subscribe needs a WebSocket connection")
}

// TestCancel: only the submitter, who alone can derive the request's
// cancel token from the session's shared key, cancels it; anyone else who
// knows the uuid is refused and the request keeps running.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ws := e.dialWS()
	s := e.hello(t, ws, uuid.NewString())
	wantResult(t, ws.send(t, s.submitBody(t, request("disclose", "vc_and_disclose", `{"a":"1"}`, nil))), nil)
	token, err := handshake.CancelToken(s.key, s.uuid)
	must(t, err)

	// Another client's session on another request: its token is not this
	// request's.
	other := e.hello(t, e.httpTransport(), uuid.NewString())
	wantResult(t, e.httpTransport().send(t, other.submitBody(t, request("disclose", "vc_and_disclose", `{"a":"2"}`, nil))), nil)
	otherToken, err := handshake.CancelToken(other.key, other.uuid)
	must(t, err)
	sameKeyOtherID, err := handshake.CancelToken(s.key, other.uuid)
	must(t, err)
	for _, tc := range []struct {
		name    string
		params  any
		code    int64
		message string
	}{
		{"no token", map[string]any{"uuid": s.uuid}, -32602, `Invalid params: param "cancel_token": is required`},
		{"null token", map[string]any{"uuid": s.uuid, "cancel_token": nil}, -32602, `Invalid params: param "cancel_token": must not be null`},
		{"empty token", map[string]any{"uuid": s.uuid, "cancel_token": []int{}}, protocol.CodeNotSubmitter, protocol.MsgNotSubmitter},
		{"another request's token", map[string]any{"uuid": s.uuid, "cancel_token": protocol.Bytes(otherToken)}, protocol.CodeNotSubmitter, protocol.MsgNotSubmitter},
		{"the token of this key for another uuid", []any{s.uuid, protocol.Bytes(sameKeyOtherID)}, protocol.CodeNotSubmitter, protocol.MsgNotSubmitter},
		{"the stored hash", map[string]any{"uuid": s.uuid, "cancel_token": protocol.Bytes(handshake.HashCancelToken(token))}, protocol.CodeNotSubmitter, protocol.MsgNotSubmitter},
		{"hex text", map[string]any{"uuid": s.uuid, "cancel_token": fmt.Sprintf("%x", token)}, -32602, `Invalid params: param "cancel_token": want an array of integers 0..255, got a string`},
		{"unknown uuid", map[string]any{"uuid": uuid.NewString(), "cancel_token": protocol.Bytes(token)}, -32600, "UUID not found"},
	} {
		for _, tr := range []transport{ws, e.httpTransport()} {
			r := tr.send(t, body(t, 9, protocol.MethodCancel, tc.params))
			if r.Error == nil || r.Error.Code != tc.code || !strings.HasPrefix(r.Error.Message, tc.message) {
				t.Fatalf("%s over %s: %s %+v, want %d %q", tc.name, tr.name(), r.Result, r.Error, tc.code, tc.message)
			}
		}
	}
	if row, err := e.Store.Get(t.Context(), s.uuid); err != nil || row.Status != status.Pending {
		t.Fatalf("row after refused cancels: %+v, %v; want pending", row, err)
	}

	cancels, err := e.NC.SubscribeSync(jobqueue.CancelSubject(s.uuid))
	must(t, err)
	watcher := e.dialWS()
	wantResult(t, watcher.send(t, body(t, 1, protocol.MethodSubscribe, map[string]any{"uuid": s.uuid})), nil)

	var res protocol.CancelResult
	wantResult(t, ws.send(t, body(t, 2, protocol.MethodCancel, map[string]any{"uuid": s.uuid, "cancel_token": protocol.Bytes(token)})), &res)
	if !res.Cancelled || res.Status != status.Failed || res.UUID != s.uuid {
		t.Fatalf("cancel answered %+v", res)
	}
	row, err := e.Store.Get(t.Context(), s.uuid)
	must(t, err)
	if row.Status != status.Failed || row.Reason != "cancelled" {
		t.Fatalf("row after cancel: status %v reason %q", row.Status, row.Reason)
	}
	if _, err := cancels.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no cancel event: %v", err)
	}
	r := watcher.read(t)
	var st protocol.Status
	must(t, json.Unmarshal(r.Params, &st))
	if r.Method != protocol.NotifyStatusUpdate || st.Status != status.Failed || st.Reason == nil || *st.Reason != "cancelled" {
		t.Fatalf("subscriber got %+v / %+v", r, st)
	}

	// Cancelling again changes nothing; over HTTP too, params by position.
	wantResult(t, e.httpTransport().send(t, body(t, 3, protocol.MethodCancel, []any{s.uuid, protocol.Bytes(token)})), &res)
	if res.Cancelled || res.Status != status.Failed {
		t.Fatalf("second cancel answered %+v", res)
	}
	// A request recorded without a cancel hash (before the column
	// existed) cannot be cancelled through the frontend.
	old := uuid.NewString()
	must(t, e.Store.Insert(t.Context(), store.Request{ID: old, ProofType: "disclose", Circuit: "vc_and_disclose"}))
	wantError(t, ws.send(t, body(t, 4, protocol.MethodCancel, map[string]any{"uuid": old, "cancel_token": protocol.Bytes(token)})),
		protocol.CodeNotSubmitter, protocol.MsgNotSubmitter)
}

// TestEnqueueFailure: when the job cannot be published the client gets
// -32603, the row is removed, and a new hello with the same uuid succeeds.
func TestEnqueueFailure(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ctx := t.Context()
	plain := request("register", "register_demo", `{"x":"42"}`, nil)
	for _, tr := range e.transports() {
		t.Run(tr.name(), func(t *testing.T) {
			id := uuid.NewString()
			before := e.StreamCount(t) // the jobs earlier subtests queued
			e.Queue.Fail.Store(true)
			s := e.hello(t, tr, id)
			r := tr.send(t, s.submitBody(t, plain))
			wantError(t, r, -32603, "Could not queue the proof request, retry with a new hello")
			if strings.Contains(string(r.Error.Data)+r.Error.Message, apitest.ErrQueueDown.Error()) {
				t.Fatal("the internal cause leaked to the client")
			}
			if ok, err := e.Store.Exists(ctx, id); err != nil || ok {
				t.Fatalf("row still there after a failed enqueue (%v, %v)", ok, err)
			}
			if n := e.StreamCount(t); n != before {
				t.Fatalf("%d jobs on the stream after a failed enqueue, %d before", n, before)
			}
			e.Queue.Fail.Store(false)
			s = e.hello(t, tr, id)
			var got string
			wantResult(t, tr.send(t, s.submitBody(t, plain)), &got)
			e.checkRecordedAndQueued(t, got, plain)
		})
	}
}

// TestEnqueueUnconfirmed: a publish that gets no acknowledgement (its
// outcome is unknown) keeps the row and its sealed job and accepts the
// request, so that a job arriving late finds its row and a lost one can be
// published again; a retry of the same uuid is refused, and the one row
// stays.
func TestEnqueueUnconfirmed(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ctx := t.Context()
	ws := e.dialWS()
	plain := request("disclose", "vc_and_disclose", `{"x":"7"}`, nil)
	before := e.StreamCount(t)
	e.Queue.Lose.Store(true)
	s := e.hello(t, ws, uuid.NewString())
	var got string
	wantResult(t, ws.send(t, s.submitBody(t, plain)), &got)
	if got != s.uuid {
		t.Fatalf("accepted %q, want %q", got, s.uuid)
	}
	e.Queue.Lose.Store(false)
	row, err := e.Store.Get(ctx, s.uuid)
	if err != nil || row.Status != status.Pending {
		t.Fatalf("row after an unconfirmed enqueue: %+v, %v", row, err)
	}
	open, err := e.Store.OpenJobs(ctx, []family.ProofType{"disclose"}, time.Now().Add(time.Second), store.Cursor{}, 10)
	if err != nil || len(open) != 1 || open[0].ID != s.uuid {
		t.Fatalf("kept jobs = %+v, %v; want the request's", open, err)
	}
	if n := e.StreamCount(t); n != before {
		t.Fatalf("%d jobs on the stream, %d before: the lost publish arrived", n, before)
	}
	// The app retries the same uuid: the request is recorded already.
	wantError(t, ws.send(t, helloBody(t, clientKey(t), s.uuid)), -32600, "UUID already exists")
	if open, _ := e.Store.OpenJobs(ctx, []family.ProofType{"disclose"}, time.Now().Add(time.Second), store.Cursor{}, 10); len(open) != 1 {
		t.Fatalf("after the retry: %d open requests, want 1", len(open))
	}
}

// TestDuplicateAnswerNotTrusted: the duplicate window remembers a job that
// was consumed since; a submit whose publish is answered "duplicate" asks
// the stream, and publishes the job again when it is not there.
func TestDuplicateAnswerNotTrusted(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ctx := t.Context()
	ws := e.dialWS()
	plain := request("register", "register_demo", `{"x":"3"}`, nil)
	id := uuid.NewString()
	s := e.hello(t, ws, id)
	wantResult(t, ws.send(t, s.submitBody(t, plain)), nil)
	// A worker takes the job and finds no row (an older frontend removed
	// it after a publish it wrongly took for failed).
	e.FetchJob(t, family.Register)
	if err := e.Store.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	before := e.StreamCount(t)
	s = e.hello(t, ws, id)
	var got string
	wantResult(t, ws.send(t, s.submitBody(t, plain)), &got)
	if n := e.StreamCount(t); n != before+1 {
		t.Fatalf("%d jobs on the stream, %d before: the retry was taken for queued", n, before)
	}
	msg := e.FetchJob(t, family.Register)
	if f, _, rid, ok := jobqueue.ParseJobSubject(msg.Subject()); !ok || f != family.Register || rid != id || msg.Headers().Get("Nats-Msg-Id") == id {
		t.Fatalf("republished job: subject %s, message id %q", msg.Subject(), msg.Headers().Get("Nats-Msg-Id"))
	}
	if !strings.Contains(e.Logs.String(), "no longer queued; publishing it again") {
		t.Error("no log line for the republished job")
	}
}

// TestQueueFull: a stream at its limit refuses the job (DiscardNew); the
// client is told and nothing stays recorded.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	e := setup(t, options{Queue: func(c *jobqueue.Config) { c.MaxMsgs = 1 }})
	ws := e.dialWS()
	plain := request("register", "register_demo", `{"x":"1"}`, nil)
	s := e.hello(t, ws, uuid.NewString())
	wantResult(t, ws.send(t, s.submitBody(t, plain)), nil)
	s = e.hello(t, ws, uuid.NewString())
	wantError(t, ws.send(t, s.submitBody(t, plain)), -32603, "The proof queue is full, retry later with a new hello")
	if ok, err := e.Store.Exists(t.Context(), s.uuid); err != nil || ok {
		t.Fatalf("row of a refused job still there (%v, %v)", ok, err)
	}
}

// TestLargeRequest sends a submit body of about 9.5 MiB (register inputs are
// large) over both transports.
func TestLargeRequest(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	var in bytes.Buffer
	in.WriteString(`{"dg1":[`)
	for i := 0; in.Len() < 2_500_000; i++ {
		if i > 0 {
			in.WriteByte(',')
		}
		in.WriteString(`"123456789012"`)
	}
	in.WriteString(`]}`)
	plain := request("register", "register_demo", in.String(), nil)
	for _, tr := range e.transports() {
		t.Run(tr.name(), func(t *testing.T) {
			s := e.hello(t, tr, uuid.NewString())
			b := s.submitBody(t, plain)
			if len(b) < 9<<20 || len(b) > 10<<20 {
				t.Fatalf("body is %d bytes, want 9..10 MiB", len(b))
			}
			var got string
			wantResult(t, tr.send(t, b), &got)
			e.checkRecordedAndQueued(t, got, plain)
		})
	}
}
