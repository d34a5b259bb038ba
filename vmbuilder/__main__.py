from vmbuilder.cli.main import main

main()
