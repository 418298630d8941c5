"""Routes of the jobs section (stub: its owner replaces this module)."""

from fastapi import APIRouter

router = APIRouter()
