// Package fixedtime holds a test of the whole tree: every fixed instant in a
// test (time.Date, time.Unix or time.Parse of literals) must say why it never
// reaches a real clock, so that a fixture that does is made relative to the
// time of the run instead of failing once that day has passed.
//
// Code outside this module compares times with the real clock and cannot be
// given a fake one: the AWS SDK's credential cache and request signing,
// certificate validity in openssl and crypto/x509, the kernel. A test that
// feeds such code an instant fixed at the day it was written passes on that
// day and fails some days later (issue 10: the SDK's cached credentials
// looked expired half an hour after t0). Mark an instant that stays among
// fake clocks and pure functions with a comment containing "fixed instant:"
// and the reason, on its line, the line above, or the doc comment of its
// declaration; derive any other from time.Now().
package fixedtime
