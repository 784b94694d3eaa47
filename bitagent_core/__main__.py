from bitagent_core._cli import main

main()
