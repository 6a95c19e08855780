package admin

import (
	"github.com/culexmq/culex/internal/admin/account"
	"golang.org/x/crypto/bcrypt"
)

// Cheap hashes: bcrypt at its default cost takes seconds under -race.
func init() {
	account.Cost = bcrypt.MinCost
	userHashCost = bcrypt.MinCost
}
