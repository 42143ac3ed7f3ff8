package etcd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/record"
)

// maxNameBytes bounds the key, far above what ec2.CheckName allows, so that
// a mistake is refused here rather than by etcd's request size limit.
const maxNameBytes = 1024

// Config says how to reach the cluster.
type Config struct {
	// Endpoints are the client URLs.
	Endpoints []string
	// Prefix starts every key; "/imds/" when empty. It ends with "/".
	Prefix string
	// CAFile, CertFile and KeyFile are PEM files: the CA of the servers'
	// certificates (the system's when empty) and a client certificate.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate with etcd's users.
	Username, Password string
	// Timeout bounds connecting and each request; 5 s when zero.
	Timeout time.Duration
	// Logger receives the state changes of Follow; discarded when nil.
	Logger *slog.Logger
}

// Store is an open connection to the cluster.
type Store struct {
	client    *clientv3.Client
	prefix    string
	endpoints string // for messages
	timeout   time.Duration
	logger    *slog.Logger
	instances *InstanceStore
}

// Open connects to the cluster and checks that it answers a read under the
// prefix (so that a wrong address, certificate or password is said at
// start-up, naming the endpoints).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	s := &Store{prefix: cfg.Prefix, endpoints: strings.Join(cfg.Endpoints, ","), timeout: cfg.Timeout, logger: cfg.Logger}
	if s.prefix == "" {
		s.prefix = "/imds/"
	}
	if !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	tlsConfig, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	s.client, err = clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: s.timeout,
		TLS:         tlsConfig,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// The client's own log would repeat every retry; imds logs the state
		// changes itself (Follow).
		Logger: zap.NewNop(),
		// Keepalives notice a dead connection that no request is using, so
		// that a watch on a vanished member is moved to another one.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Context:              context.WithoutCancel(ctx),
		// gRPC's reconnection backoff grows to two minutes: writes would
		// fail that long after etcd came back. A second at most.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: s.timeout,
		})},
	})
	if err != nil {
		// A refused login ends here: the client logs in as it connects.
		return nil, s.fail(ctx, "the login of user "+cfg.Username, err)
	}
	s.instances = &InstanceStore{s: s, dir: s.prefix + "instances/"}
	if err := s.Ping(ctx); err != nil {
		s.client.Close()
		if why := diagnose(cfg.Endpoints, tlsConfig, s.timeout); why != "" && ec2.ErrorCode(err) == ec2.EUNAVAILABLE {
			return nil, ec2.Errorf(ec2.EUNAVAILABLE, "%s (%s)", ec2.ErrorMessage(err), why)
		}
		return nil, err
	}
	return s, nil
}

// diagnose says why the endpoints cannot be reached, as far as a plain
// connection (and a TLS handshake) tells: the client's own error is only
// a deadline, which hides a refused connection or a certificate problem.
func diagnose(endpoints []string, tc *tls.Config, timeout time.Duration) string {
	var why []string
	for _, ep := range endpoints {
		host := strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://")
		d := &net.Dialer{Timeout: min(timeout, 2*time.Second)}
		c, err := d.Dial("tcp", host)
		if err == nil && strings.HasPrefix(ep, "https://") && tc != nil {
			cc := tc.Clone()
			if cc.ServerName == "" {
				cc.ServerName, _, _ = net.SplitHostPort(host)
			}
			tconn := tls.Client(c, cc)
			tconn.SetDeadline(time.Now().Add(d.Timeout))
			err = tconn.Handshake()
			if err == nil {
				// TLS 1.3 servers refuse a client certificate after the
				// handshake: the alert comes with the first read.
				var b [1]byte
				_, err = tconn.Read(b[:])
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					err = nil
				}
			}
			c = tconn
		}
		if c != nil {
			c.Close()
		}
		if err != nil {
			why = append(why, ep+": "+err.Error())
		}
	}
	return strings.Join(why, "; ")
}

// tlsConfig builds the client's TLS settings: nil for plain http endpoints.
func tlsConfig(cfg Config) (*tls.Config, error) {
	https := false
	for _, ep := range cfg.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if !https && cfg.CAFile == "" && cfg.CertFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.tls.ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.etcd.tls.ca: %s holds no PEM certificate", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.tls.cert/key: %v", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Close ends the connection.
func (s *Store) Close() error { return s.client.Close() }

// Endpoints names the cluster, for messages.
func (s *Store) Endpoints() string { return s.endpoints }

// Instances returns the instance store under the prefix.
func (s *Store) Instances() *InstanceStore { return s.instances }

// Ping reads one key under the prefix with a quorum read, so that it fails
// while the cluster has no leader as well as when it cannot be reached.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.client.Get(clientv3.WithRequireLeader(ctx), s.prefix+"ping", clientv3.WithCountOnly())
	return s.fail(ctx, "a read", err)
}

// fail turns a client error into an ec2.Error naming the cluster: a
// canceled caller's context is returned as is, everything else is
// EUNAVAILABLE (or EFORBIDDEN for etcd's permission errors).
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return cerr
	}
	cause := err.Error()
	code := ec2.EUNAVAILABLE
	if st, ok := status.FromError(err); ok {
		cause = st.Message()
		switch st.Code() {
		case codes.PermissionDenied, codes.Unauthenticated:
			code = ec2.EFORBIDDEN
		case codes.DeadlineExceeded:
			cause = fmt.Sprintf("no answer within %s", s.timeout)
		}
	}
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrPermissionDenied),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		code = ec2.EFORBIDDEN
	}
	if errors.Is(err, context.DeadlineExceeded) {
		cause = fmt.Sprintf("no answer within %s", s.timeout)
	}
	return ec2.Errorf(code, "the instance store (etcd at %s) refused or did not answer %s: %s", s.endpoints, op, cause)
}

// InstanceStore is ec2.InstanceStore on the cluster. It is safe for
// concurrent use.
type InstanceStore struct {
	s   *Store
	dir string // prefix + "instances/"
	// rev is the highest revision a FindInstances has read: Follow watches
	// from the one after it.
	rev atomic.Int64
	// last is the latest list read, as etcd sent it, answered while etcd
	// does not (see FindInstances): decoded again then, so that each
	// caller gets values of its own without copying every list. This
	// store's own writes and the changes a Follower applies are patched
	// into it (remember), since the registry no longer lists the store
	// after each of them.
	last atomic.Pointer[[]*mvccpb.KeyValue]
	// ownOverlays holds, by overlay key, the revision of this store's last
	// write of it, until a Follower sees it (see ownOverlay).
	ownOverlays sync.Map
}

var _ ec2.InstanceStore = (*InstanceStore)(nil)

func (is *InstanceStore) key(name string) string { return is.dir + name }

// call runs one request with the store's timeout.
func (is *InstanceStore) call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, is.s.timeout)
	defer cancel()
	return is.s.fail(cctx, op, f(cctx))
}

// FindInstanceByName implements ec2.InstanceStore.
func (is *InstanceStore) FindInstanceByName(ctx context.Context, name string) (*ec2.Instance, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var resp *clientv3.GetResponse
	if err := is.call(ctx, "a read of instance "+name, func(ctx context.Context) (err error) {
		resp, err = is.s.client.Get(ctx, is.key(name))
		return err
	}); err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, ec2.Errorf(ec2.ENOTFOUND, "instance %q not found", name)
	}
	return is.decode(name, resp.Kvs[0].Value)
}

// FindInstances implements ec2.InstanceStore: one range read, so the list
// is the cluster's state at one revision. etcd returns keys in byte order,
// the order of Go's string comparison.
//
// While etcd does not answer, it returns the last list it read: the
// registry lists the store on every change of its own (a config reload,
// a container found), which would otherwise wait for etcd too. Revision
// still names the last list really read, so a follower resumes from there.
func (is *InstanceStore) FindInstances(ctx context.Context) ([]*ec2.Instance, error) {
	var resp *clientv3.GetResponse
	if err := is.call(ctx, "the list of instances", func(ctx context.Context) (err error) {
		resp, err = is.s.client.Get(ctx, is.dir, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		return err
	}); err != nil {
		if last := is.last.Load(); last != nil && ec2.ErrorCode(err) == ec2.EUNAVAILABLE && ctx.Err() == nil {
			return is.decodeAll(*last)
		}
		return nil, err
	}
	insts, err := is.decodeAll(resp.Kvs)
	if err != nil {
		return nil, err
	}
	for {
		cur := is.rev.Load()
		if resp.Header.Revision <= cur {
			break
		}
		if is.rev.CompareAndSwap(cur, resp.Header.Revision) {
			is.last.Store(&resp.Kvs)
			break
		}
	}
	return insts, nil
}

func (is *InstanceStore) decodeAll(kvs []*mvccpb.KeyValue) ([]*ec2.Instance, error) {
	insts := make([]*ec2.Instance, 0, len(kvs))
	for _, kv := range kvs {
		inst, err := is.decode(strings.TrimPrefix(string(kv.Key), is.dir), kv.Value)
		if err != nil {
			return nil, err
		}
		insts = append(insts, inst)
	}
	return insts, nil
}

// Revision is the revision of the latest FindInstances, or of this
// store's own latest write when it came right after it.
func (is *InstanceStore) Revision() int64 { return is.rev.Load() }

// remember patches the list FindInstances answers while etcd does not
// with changes by key (a nil value: removed). It copies the list (pointers
// only): about 0.1 ms at 100,000 instances.
func (is *InstanceStore) remember(changes map[string][]byte) {
	for {
		old := is.last.Load()
		if old == nil || len(changes) == 0 {
			return
		}
		next := make([]*mvccpb.KeyValue, 0, len(*old)+len(changes))
		found := make(map[string]bool, len(changes))
		for _, kv := range *old {
			v, ok := changes[string(kv.Key)]
			switch {
			case !ok:
				next = append(next, kv)
			case v != nil:
				next = append(next, &mvccpb.KeyValue{Key: kv.Key, Value: v})
			}
			if ok {
				found[string(kv.Key)] = true
			}
		}
		sorted := true
		for k, v := range changes {
			if v != nil && !found[k] {
				next, sorted = append(next, &mvccpb.KeyValue{Key: []byte(k), Value: v}), false
			}
		}
		if !sorted {
			slices.SortFunc(next, func(a, b *mvccpb.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
		}
		if is.last.CompareAndSwap(old, &next) {
			return
		}
	}
}

// advance moves Revision from before to the last of revs when revs are the
// revisions right after it, one by one: this store's own writes, which the
// registry applies to its index itself, so that a Follower needs no list
// of them. A write of someone else in between leaves Revision where it was,
// and the Follower lists the instances again.
func (is *InstanceStore) advance(before int64, revs ...int64) {
	for i, r := range revs {
		if r != before+int64(i)+1 {
			return
		}
	}
	if len(revs) > 0 {
		is.rev.CompareAndSwap(before, revs[len(revs)-1])
	}
}

// CreateInstance implements ec2.InstanceStore.
func (is *InstanceStore) CreateInstance(ctx context.Context, inst *ec2.Instance) error {
	return is.putOne(ctx, inst, "the creation of instance ", "=", func() error {
		return ec2.Errorf(ec2.ECONFLICT, "instance %q already exists", inst.Name)
	})
}

// putOne writes inst's record in one transaction if the creation revision
// of its key compares with 0 by op ("=": it must not exist, ">": it must);
// refused is the error when it does not hold. what names the write in an
// error of etcd's.
func (is *InstanceStore) putOne(ctx context.Context, inst *ec2.Instance, what, op string, refused func() error) error {
	v, err := encode(inst)
	if err != nil {
		return err
	}
	var resp *clientv3.TxnResponse
	k := is.key(inst.Name)
	before := is.rev.Load()
	if err := is.call(ctx, what+inst.Name, func(ctx context.Context) (err error) {
		resp, err = is.s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), op, 0)).
			Then(clientv3.OpPut(k, string(v))).Commit()
		return err
	}); err != nil {
		return err
	}
	if !resp.Succeeded {
		return refused()
	}
	is.remember(map[string][]byte{k: v})
	is.advance(before, resp.Header.Revision)
	return nil
}

// Limits of one transaction of CreateInstances: etcd's default
// --max-txn-ops (128) and, with room to spare, its default request size
// limit (1.5 MiB).
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20
)

var _ ec2.InstanceBatchStore = (*InstanceStore)(nil)

// CreateInstances implements ec2.InstanceBatchStore. A batch that fits in
// one transaction (128 records, 1 MiB) is one Txn: every record or none. A
// larger one is written in such transactions in order; when one fails, those
// already written are deleted again (each only if no one changed it since),
// so that the batch leaves nothing behind; followers may see those records
// come and go. If the removal fails too (etcd went away), the error names
// what stays stored.
func (is *InstanceStore) CreateInstances(ctx context.Context, insts []*ec2.Instance) error {
	var chunks []*batchTxn
	size := 0
	seen := make(map[string]bool, len(insts))
	for _, inst := range insts {
		v, err := encode(inst)
		if err != nil {
			return err
		}
		if seen[inst.Name] {
			// etcd refuses a transaction that puts one key twice.
			return ec2.Errorf(ec2.ECONFLICT, "instance %q is twice in the batch", inst.Name)
		}
		seen[inst.Name] = true
		if len(chunks) == 0 || len(chunks[len(chunks)-1].ops) == maxTxnOps || size+len(v) > maxTxnBytes {
			chunks = append(chunks, &batchTxn{})
			size = 0
		}
		c, k := chunks[len(chunks)-1], is.key(inst.Name)
		c.names = append(c.names, inst.Name)
		c.cmps = append(c.cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		c.ops = append(c.ops, clientv3.OpPut(k, string(v)))
		size += len(k) + len(v)
	}
	var written []*batchTxn
	before := is.rev.Load()
	for _, c := range chunks {
		var resp *clientv3.TxnResponse
		err := is.call(ctx, fmt.Sprintf("the creation of %d instances", len(insts)), func(ctx context.Context) (err error) {
			resp, err = is.s.client.Txn(ctx).If(c.cmps...).Then(c.ops...).Commit()
			return err
		})
		if err == nil && !resp.Succeeded {
			err = is.conflict(ctx, c.names)
		}
		if err != nil {
			if len(written) == 0 {
				return err
			}
			return is.undo(ctx, err, written)
		}
		c.rev = resp.Header.Revision
		written = append(written, c)
	}
	revs := make([]int64, len(written))
	stored := make(map[string][]byte, len(insts))
	for i, c := range written {
		revs[i] = c.rev
		for _, op := range c.ops {
			stored[string(op.KeyBytes())] = op.ValueBytes()
		}
	}
	is.remember(stored)
	is.advance(before, revs...)
	return nil
}

// conflict is the ECONFLICT error of a batch transaction that failed its
// comparisons: it names the first of names that exists.
func (is *InstanceStore) conflict(ctx context.Context, names []string) error {
	for _, n := range names {
		if _, err := is.FindInstanceByName(ctx, n); err == nil || ec2.ErrorCode(err) != ec2.ENOTFOUND {
			return ec2.Errorf(ec2.ECONFLICT, "instance %q already exists", n)
		}
	}
	return ec2.Errorf(ec2.ECONFLICT, "an instance of the batch already exists")
}

// batchTxn is one transaction of CreateInstances.
type batchTxn struct {
	names []string
	cmps  []clientv3.Cmp
	ops   []clientv3.Op
	rev   int64 // the revision it was written at
}

// undo deletes the transactions of a batch already written after a later
// one failed with cause, each record only if still at the revision the
// batch wrote it at. The error is cause, saying what the batch left.
func (is *InstanceStore) undo(ctx context.Context, cause error, written []*batchTxn) error {
	var kept []string
	for _, c := range written {
		for _, n := range c.names {
			k := is.key(n)
			err := is.call(context.WithoutCancel(ctx), "the removal of instance "+n, func(ctx context.Context) error {
				_, err := is.s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", c.rev)).Then(clientv3.OpDelete(k)).Commit()
				return err
			})
			if err != nil {
				kept = append(kept, n)
			}
		}
	}
	if len(kept) == 0 {
		return ec2.Errorf(ec2.ErrorCode(cause), "%s (nothing of the batch was kept)", ec2.ErrorMessage(cause))
	}
	return ec2.Errorf(ec2.ErrorCode(cause), "%s; %d instances of the batch were stored and could not be removed again, and stay: %s",
		ec2.ErrorMessage(cause), len(kept), strings.Join(kept, ", "))
}

// UpdateInstance implements ec2.InstanceStore: the record is replaced
// whole, if it still exists.
func (is *InstanceStore) UpdateInstance(ctx context.Context, inst *ec2.Instance) error {
	return is.putOne(ctx, inst, "the update of instance ", ">", func() error {
		return ec2.Errorf(ec2.ENOTFOUND, "instance %q not found", inst.Name)
	})
}

// DeleteInstance implements ec2.InstanceStore. It does not decode the
// record, so that a corrupt one can be removed.
func (is *InstanceStore) DeleteInstance(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	var resp *clientv3.DeleteResponse
	before := is.rev.Load()
	if err := is.call(ctx, "the removal of instance "+name, func(ctx context.Context) (err error) {
		resp, err = is.s.client.Delete(ctx, is.key(name))
		return err
	}); err != nil {
		return err
	}
	if resp.Deleted == 0 {
		return ec2.Errorf(ec2.ENOTFOUND, "instance %q not found", name)
	}
	is.remember(map[string][]byte{is.key(name): nil})
	is.advance(before, resp.Header.Revision)
	return nil
}

// checkName rejects names no key can be made of.
func checkName(name string) error { return record.CheckName(name, maxNameBytes) }

// encode checks inst and marshals its record.
func encode(inst *ec2.Instance) ([]byte, error) { return record.Encode(inst, maxNameBytes) }

func (is *InstanceStore) decode(name string, v []byte) (*ec2.Instance, error) {
	inst, err := record.Unmarshal(name, v)
	if err != nil {
		return nil, ec2.Errorf(ec2.EINTERNAL, "instance %q: the record in etcd (%s at %s) is corrupt: %v", name, is.key(name), is.s.endpoints, err)
	}
	return inst, nil
}

// ClusterSeed returns the seed every host sharing the prefix derives the
// values of stored instances from (IDs, MACs, host names left to derive),
// creating it on first use: a machine's own seed would give one instance
// another ID on each host. It is no secret: it only keeps derived values
// the same everywhere.
func (s *Store) ClusterSeed(ctx context.Context) ([]byte, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	key := s.prefix + "seed"
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, hex.EncodeToString(seed))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, s.fail(cctx, "the cluster seed", err)
	}
	if resp.Succeeded {
		return []byte(hex.EncodeToString(seed)), nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || len(kvs[0].Value) == 0 {
		return nil, ec2.Errorf(ec2.EINTERNAL, "the cluster seed %s in etcd at %s is empty", key, s.endpoints)
	}
	return kvs[0].Value, nil
}
