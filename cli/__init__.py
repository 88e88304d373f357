"""The roof of the house: the `prelu-deploy` console script, which gathers the subcommands that live
beside the code they drive (models/, export/, runners/, serve/, bench/)."""
