from wsolbench.cli import main

main()
