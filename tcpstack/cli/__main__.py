from tcpstack.cli import main

main()
