// Package etcd keeps the instances registered at run time in an etcd
// cluster, the backend of ec2.InstanceStore that several imds hosts share.
//
// Each instance is one key, <prefix>instances/<name>, holding the same JSON
// record as the bbolt file (internal/store/record). Create and update are
// transactions on the key's create revision, so two hosts creating one name
// at once get one success and one ECONFLICT.
//
// Follow keeps a registry in step with the cluster: it watches the prefix
// from the revision of the last list, and on every change, on a compacted
// or lost watch, and when etcd answers again after an outage, it has the
// registry list the instances again and swap its index whole. The metadata
// path never waits on etcd: it reads the registry's in-memory index, which
// keeps the last list while etcd is away.
package etcd
