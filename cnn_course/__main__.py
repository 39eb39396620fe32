"""`python -m cnn_course`: prepare the full FashionMNIST (see cnn_course.data.main)."""
from .data import main

raise SystemExit(main())
