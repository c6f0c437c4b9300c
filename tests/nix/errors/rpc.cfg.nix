{ rpc.askTimeout = 0; }
