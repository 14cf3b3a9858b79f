from modelog.cli.main import main

main()
