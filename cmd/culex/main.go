// Command culex is the Culex MQTT broker and its tools.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `culex: an MQTT broker cluster that carries device traffic into Kafka and back.

Usage:
  culex serve [flags]     run a broker node (culex serve -h for flags)
  culex bench CMD [flags] load-test any MQTT broker (conn, pub, sub)
  culex users CMD [flags] manage the users file (add, passwd, rm, list)
  culex cluster status    print the nodes of the cluster (culex cluster -h)
  culex bridge [flags]    standalone MQTT -> Kafka / Kafka -> MQTT bridge for any broker
  culex version           print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "bench":
		err = bench(args)
	case "users":
		err = users(args)
	case "bridge":
		err = bridge(args)
	case "cluster":
		err = clusterCmd(args)
	case "version", "--version", "-v":
		fmt.Println("culex", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "culex: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "culex:", err)
		os.Exit(1)
	}
}
