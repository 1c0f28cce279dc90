"""RMI and RSI command handlers, one module per command group, functions named rmi_<command>."""
