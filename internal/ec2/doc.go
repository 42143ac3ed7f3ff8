// Package ec2 is the domain of imds: the instances it serves, their IAM roles,
// credentials, metadata settings and the errors the rest of the program maps to
// its transports.
//
// It imports only the standard library and knows nothing about HTTP, storage or
// the AWS SDK; adapters in sibling packages translate between it and those
// technologies. TestDomainImports in hygiene_test.go (module root) enforces
// that rule.
package ec2
