"""The architecture zoo; importing this package registers every entry."""

from prelu_deploy.models.archs import alexnet, cifar, digits, paper  # noqa: F401
