// Package bolt stores the instances registered at run time in a bbolt file
// (data_dir/imds.db), the embedded default backend of ec2.InstanceStore.
//
// The file holds two buckets: "meta", whose "schema" key versions the bucket
// layout, and "instances", which maps an instance name to a JSON record
// (internal/store/record, shared with the etcd store) rather than
// ec2.Instance itself, so that renaming or reorganising Go fields never
// silently changes the file format: the record's JSON names are the format,
// and its version field tells a future imds how to read it.
//
// Every commit is fsynced (bbolt's NoSync stays false): an instance the admin
// API reported as created survives a crash of the process or of the machine.
// The file is locked while open, so a second imds on the same data directory
// fails at start-up instead of corrupting or waiting for it.
package bolt
