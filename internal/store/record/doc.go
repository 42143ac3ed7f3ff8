// Package record is the stored form of an instance, shared by every
// ec2.InstanceStore backend (bbolt, etcd): a JSON document whose names are
// the format, not Go field names, with a version that tells a future imds
// how to read it. A record written by one backend reads the same in any
// other, so that `imds db dump` output can be loaded into either.
package record
