from frtwatch.cli import main

main()
