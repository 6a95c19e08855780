package topic

// Entry is one subscriber of a filter and the value the broker keeps with it
// (QoS, no-local, retain handling, subscription identifier...).
type Entry[S comparable, V any] struct {
	Sub   S
	Value V
}

// posThreshold is the list length above which entries keeps a position map:
// below it a linear scan is faster than hashing.
const posThreshold = 16

// entries is the subscribers of one filter in insertion order.
type entries[S comparable, V any] struct {
	list []Entry[S, V]
	pos  map[S]int // index into list; nil while list is short
}

func (e *entries[S, V]) find(sub S) int {
	if e.pos != nil {
		if i, ok := e.pos[sub]; ok {
			return i
		}
		return -1
	}
	for i := range e.list {
		if e.list[i].Sub == sub {
			return i
		}
	}
	return -1
}

// set adds sub or replaces its value, reporting whether it existed.
func (e *entries[S, V]) set(sub S, v V) bool {
	if i := e.find(sub); i >= 0 {
		e.list[i].Value = v
		return true
	}
	e.list = append(e.list, Entry[S, V]{sub, v})
	if e.pos != nil {
		e.pos[sub] = len(e.list) - 1
	} else if len(e.list) > posThreshold {
		e.pos = make(map[S]int, len(e.list))
		for i := range e.list {
			e.pos[e.list[i].Sub] = i
		}
	}
	return false
}

// remove deletes sub keeping the order of the rest, reporting whether it
// existed.
func (e *entries[S, V]) remove(sub S) bool {
	i := e.find(sub)
	if i < 0 {
		return false
	}
	copy(e.list[i:], e.list[i+1:])
	e.list[len(e.list)-1] = Entry[S, V]{} // drop references for the GC
	e.list = e.list[:len(e.list)-1]
	switch {
	case len(e.list) == 0:
		e.list, e.pos = nil, nil
	case e.pos != nil && len(e.list) <= posThreshold/2:
		e.pos = nil
	case e.pos != nil:
		delete(e.pos, sub)
		for j := i; j < len(e.list); j++ {
			e.pos[e.list[j].Sub] = j
		}
	}
	return true
}

func (e *entries[S, V]) empty() bool { return len(e.list) == 0 }
