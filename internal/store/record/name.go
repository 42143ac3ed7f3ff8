package record

import "github.com/imdsdev/imds/internal/ec2"

// CheckName rejects names a store cannot key a record by: empty, or longer
// than maxBytes (the backend's limit). Finer rules (length, characters) are
// ec2.Instance.Validate's business, applied before storing.
func CheckName(name string, maxBytes int) error {
	if name == "" {
		return ec2.Errorf(ec2.EINVALID, "the instance name must not be empty")
	}
	if len(name) > maxBytes {
		return ec2.Errorf(ec2.EINVALID, "the instance name is longer than %d bytes", maxBytes)
	}
	return nil
}

// Encode checks inst and its name (see CheckName) and marshals its record;
// stores call it outside any transaction, so that a write lock is held only
// for the write.
func Encode(inst *ec2.Instance, maxNameBytes int) ([]byte, error) {
	if inst == nil {
		return nil, ec2.Errorf(ec2.EINVALID, "no instance given")
	}
	if err := CheckName(inst.Name, maxNameBytes); err != nil {
		return nil, err
	}
	return Marshal(inst)
}
