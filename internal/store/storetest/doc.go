// Package storetest holds the contract tests every ec2.InstanceStore backend
// must pass, so that the embedded bbolt store and any other backend behave
// alike for the instance service above them.
//
// A backend's own test calls Run with a constructor of fresh, empty stores.
// The package also provides FullInstance, a sample that sets every field of
// ec2.Instance, and ZeroFields, which finds the fields a value leaves unset,
// so that a backend's encoding test fails when ec2.Instance grows a field the
// encoding does not carry.
package storetest
