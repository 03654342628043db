DROP TABLE delivery_marks;
