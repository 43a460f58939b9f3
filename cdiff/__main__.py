from cdiff.cli import main

main()
