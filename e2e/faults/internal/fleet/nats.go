package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSNode is one nats-server process with JetStream, restartable on the
// same ports and store.
type NATSNode struct {
	Name    string
	procs   *Procs
	bin     string
	config  string
	port    int
	monitor int
	proc    *Proc
}

// NATS is a single server or a cluster of nodes.
type NATS struct {
	Nodes []*NATSNode
}

// StartNATS starts n nats-server processes (1: a single server; 3: a
// JetStream cluster) from the binary bin, their stores and configuration
// under dir.
func StartNATS(ctx context.Context, procs *Procs, bin, dir string, n int) (*NATS, error) {
	type ports struct{ client, cluster, monitor int }
	ps := make([]ports, n)
	for i := range ps {
		for _, p := range []*int{&ps[i].client, &ps[i].cluster, &ps[i].monitor} {
			v, err := FreePort()
			if err != nil {
				return nil, err
			}
			*p = v
		}
	}
	ns := &NATS{}
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		store := filepath.Join(dir, name)
		if err := os.MkdirAll(store, 0o700); err != nil {
			return nil, err
		}
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\nmax_payload: 16MB\n", name, ps[i].client, ps[i].monitor)
		fmt.Fprintf(&cfg, "jetstream {\n  store_dir: %q\n}\n", store)
		if n > 1 {
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ps[j].cluster))
				}
			}
			fmt.Fprintf(&cfg, "cluster {\n  name: faults\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", ps[i].cluster, strings.Join(routes, ", "))
		}
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
			return nil, err
		}
		ns.Nodes = append(ns.Nodes, &NATSNode{Name: name, procs: procs, bin: bin, config: path, port: ps[i].client, monitor: ps[i].monitor})
	}
	for _, node := range ns.Nodes {
		if err := node.Start(ctx); err != nil {
			return nil, err
		}
	}
	if err := ns.WaitJetStream(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return ns, nil
}

// URL is the client URL of this node.
func (n *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Start starts the node (again) and waits until it accepts connections.
func (n *NATSNode) Start(ctx context.Context) error {
	if n.proc != nil && !n.proc.Exited() {
		return fmt.Errorf("fleet: %s is running", n.Name)
	}
	p, err := n.procs.Start(Spec{Name: n.Name, Argv: []string{n.bin, "-c", n.config}, Env: []string{}})
	if err != nil {
		return err
	}
	n.proc = p
	return WaitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", n.port), 30*time.Second, p.Done())
}

// Kill kills the node with SIGKILL.
func (n *NATSNode) Kill() { n.proc.Kill() }

// Stop stops the node gracefully.
func (n *NATSNode) Stop() error { return n.proc.Stop(syscall.SIGTERM, 30*time.Second) }

// Running reports whether the node's process runs.
func (n *NATSNode) Running() bool { return n.proc != nil && !n.proc.Exited() }

// URLs is the comma-separated client URL list of every node.
func (ns *NATS) URLs() string {
	var urls []string
	for _, n := range ns.Nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// Node finds a node by server name.
func (ns *NATS) Node(name string) *NATSNode {
	for _, n := range ns.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Connect opens a client connection to the servers (for the suite's own
// checks), reconnecting for ever.
func (ns *NATS) Connect() (*nats.Conn, error) {
	return nats.Connect(ns.URLs(), nats.Name("faults"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
}

// WaitJetStream waits until JetStream answers and, in a cluster, every
// node is a current peer of the meta group (before that, a stream at R3
// can find "no suitable peers for placement").
func (ns *NATS) WaitJetStream(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	if len(ns.Nodes) > 1 {
		for !ns.metaComplete() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("fleet: the JetStream cluster did not form within %s", limit)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	nc, err := ns.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fleet: JetStream not ready after %s: %w", limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StreamLeader names the node that leads stream (a cluster), waiting for
// one to be elected.
func (ns *NATS) StreamLeader(ctx context.Context, stream string, limit time.Duration) (*NATSNode, error) {
	nc, err := ns.Connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(cctx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(cctx)
		}
		cancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			if n := ns.Node(info.Cluster.Leader); n != nil {
				return n, nil
			}
			return nil, fmt.Errorf("fleet: stream leader %q is not one of ours", info.Cluster.Leader)
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("no leader")
			}
			return nil, fmt.Errorf("fleet: stream %s: %w", stream, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metaComplete reports whether every node knows the same meta leader and
// a cluster of all the nodes, and the leader sees the others as current
// peers (the monitoring endpoint /jsz; followers do not follow each other).
func (ns *NATS) metaComplete() bool {
	client := &http.Client{Timeout: 2 * time.Second}
	leaders := map[string]bool{}
	leaderSeesAll := false
	for _, n := range ns.Nodes {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.monitor))
		if err != nil {
			return false
		}
		var jsz struct {
			Meta *struct {
				Leader   string `json:"leader"`
				Size     int    `json:"cluster_size"`
				Replicas []struct {
					Current bool `json:"current"`
					Offline bool `json:"offline"`
				} `json:"replicas"`
			} `json:"meta_cluster"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil || jsz.Meta == nil || jsz.Meta.Leader == "" || jsz.Meta.Size != len(ns.Nodes) {
			return false
		}
		leaders[jsz.Meta.Leader] = true
		if jsz.Meta.Leader != n.Name {
			continue
		}
		current := 0
		for _, r := range jsz.Meta.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
		leaderSeesAll = current == len(ns.Nodes)-1
	}
	return len(leaders) == 1 && leaderSeesAll
}
