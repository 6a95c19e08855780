module github.com/culexmq/culex

go 1.26
