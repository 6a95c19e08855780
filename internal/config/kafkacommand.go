package config

import (
	"fmt"
	"time"
)

// DefaultMaxStall is a command's max_stall when the key is left out.
const DefaultMaxStall = 5 * time.Minute

// StallLimit is c's max_stall: DefaultMaxStall when left out, 0 for a
// stall without limit.
func (c KafkaCommand) StallLimit() time.Duration {
	if c.MaxStall == nil {
		return DefaultMaxStall
	}
	return *c.MaxStall
}

func (k *Kafka) validateCommands(bad func(key, format string, args ...any)) {
	for i, c := range k.Commands {
		if d := c.StallLimit(); d < 0 {
			bad(fmt.Sprintf("kafka.commands[%d].max_stall", i), "%v is negative (0: stall without limit)", d)
		}
	}
}
