from cairo_coder.cli import main

main()
