"""`python -m rmm_mp` is the rmm-mp command (rmm_mp.launch: Ctrl-C while it starts is quiet)."""

from rmm_mp.launch import main

main()
