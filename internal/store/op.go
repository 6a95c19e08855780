package store

import (
	"errors"
	"fmt"
)

// MaxKeySize is the longest key a Store accepts, in bytes. It is bbolt's
// limit, enforced by every implementation so that code tested against Memory
// behaves the same on Bolt.
const MaxKeySize = 32768

// MaxValueSize is the longest value a Store accepts, in bytes (bbolt's limit).
const MaxValueSize = 1<<31 - 2

// ErrInvalidOp is wrapped by the error an Apply's done callback gets when one
// of its ops is malformed. None of that Apply's ops take effect; other Apply
// calls committed in the same batch are not affected.
var ErrInvalidOp = errors.New("store: invalid op")

// check reports why op cannot be applied, or nil.
func (op Op) check() error {
	if op.Bucket == "" {
		return fmt.Errorf("%w: empty bucket name", ErrInvalidOp)
	}
	switch op.Kind {
	case Put, Delete:
		if op.Key == "" {
			return fmt.Errorf("%w: %s with empty key in bucket %s", ErrInvalidOp, op.Kind, op.Bucket)
		}
	case DeletePrefix:
		// An empty prefix clears the bucket.
	default:
		return fmt.Errorf("%w: unknown kind %d in bucket %s", ErrInvalidOp, op.Kind, op.Bucket)
	}
	if len(op.Key) > MaxKeySize {
		return fmt.Errorf("%w: key of %d bytes in bucket %s exceeds %d", ErrInvalidOp, len(op.Key), op.Bucket, MaxKeySize)
	}
	if int64(len(op.Value)) > MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes in bucket %s exceeds %d", ErrInvalidOp, len(op.Value), op.Bucket, int64(MaxValueSize))
	}
	return nil
}

// checkOps reports the first malformed op of an Apply, or nil.
func checkOps(ops []Op) error {
	for i := range ops {
		if err := ops[i].check(); err != nil {
			return err
		}
	}
	return nil
}

// String returns the kind's name, for errors and logs.
func (k OpKind) String() string {
	switch k {
	case Put:
		return "put"
	case Delete:
		return "delete"
	case DeletePrefix:
		return "delete-prefix"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}
