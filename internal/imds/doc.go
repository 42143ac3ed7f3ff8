// Package imds serves the EC2 instance metadata API (IMDSv1 and IMDSv2) over
// HTTP.
//
// Every request is resolved against one immutable tree per instance snapshot,
// so listings, trailing-slash rules, version prefixes and content types all
// come from one place rather than a route per leaf. The tree is rebuilt only
// when the instance changes; credentials are the only leaves computed per
// request, because they rotate on their own.
package imds
