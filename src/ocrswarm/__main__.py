from ocrswarm.cli import main

main()
