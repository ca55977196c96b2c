"""(placeholder: filled in by the owner of this fixture)"""
