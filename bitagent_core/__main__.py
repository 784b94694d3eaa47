from bitagent_core.cli import main

main()
