"""`python -m prelu_deploy.cli`: the console script without its launcher (the bundled model's export runs so)."""

from prelu_deploy.cli.main import main

main()
