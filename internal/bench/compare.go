package bench

import (
	"context"
	"errors"
	"io"
)

// Compare runs the Culex vs Mosquitto matrix.
func Compare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("TODO")
}
