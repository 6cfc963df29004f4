"""HTML pages for reviewers and operators."""
