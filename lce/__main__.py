from lce.cli import main

main()
